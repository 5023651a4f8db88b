"""Run ``dativo`` commands in the fresh virtualenv quickly: import the CLI once, fork a child per command.

Started with the virtualenv's own interpreter by tests/market/conftest.py. Each request (one JSON line on
stdin: argv, cwd, env, the files for stdout and stderr, modules to look for) runs in a forked child, exactly
as ``dativo ARGV`` would in a new process of that environment, but without paying the CLI's import time again.
The answer (one JSON line) gives the exit code and which of the asked modules the child had imported.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import traceback

import dativo.cli


def _child(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    importlib.invalidate_caches()
    code = 0
    try:
        dativo.cli.main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # noqa: BLE001 - reported as a crash, like an uncaught exception would be
        traceback.print_exc()
        code = 1
    loaded = [m for m in request.get("modules", []) if m in sys.modules]
    with open(request["report"], "w") as report:
        json.dump({"loaded": loaded}, report)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
