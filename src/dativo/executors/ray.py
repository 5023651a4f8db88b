"""Run a dataset's splits as Ray tasks across a cluster; the driver plans, merges and commits once.

The process that runs ``dativo run`` is the driver. It validates the job, loads the plugins, checks,
discovers, plans and prepares the target exactly as a local run does; then, instead of threads, each split
becomes one Ray task (:func:`dativo.engine.run_split`, whose argument is a picklable
:class:`~dativo.executors.task.SplitTask`). The task loads the reader and writer on its worker, streams the
split and returns its :class:`~dativo.api.WrittenFiles`; the driver adds each result to the dataset's run and
the engine commits once per dataset, with the run id and the new state, as always.

Guarantees, and what gives them:

- *Exactly once under worker failures.* A worker process or node that dies mid-split makes Ray run the task
  again (``executor.max_retries``). Only the value Ray returns for a task — its final, successful attempt —
  is merged: a killed attempt's files are never returned, so never committed. A plugin's own failure is not
  retried (it would fail again): it comes back as the result's error and fails the run, or falls back to the
  built-in, exactly as locally.
- *Nothing published before the commit.* If the driver dies, Ray ends its tasks and no commit happens; a
  rerun starts from the committed state. If a split fails, the remaining tasks are cancelled (each aborts
  what it wrote) and the engine aborts the files it already received.
- *One snapshot.* The driver's reader stays open until the commit, so a Postgres source keeps the
  transaction whose snapshot every split imports (``SET TRANSACTION SNAPSHOT``) open on the driver while
  the splits, and any retries, run on the workers.
- *Reachable places only.* A source or target only the driver's disk holds is refused before anything runs
  (:mod:`.reach`), and a dataset whose schema ``discover`` did not declare is refused too: the driver must
  create the target before any worker writes into it.

Progress: each worker adds the rows it reads to a small counter actor, which the driver polls while it waits
for results; the run report lists, per node, the splits, rows and seconds.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dativo.api import Dataset, Mode, Split
from dativo.config import JobConfig
from dativo.counters import Counters
from dativo.errors import ConfigError, ConnectionFailed, DativoError, PluginFailed
from dativo.executors.reach import refuse_unreachable
from dativo.executors.task import SplitResult, SplitTask
from dativo.registry import builtin_for
from dativo.report import NodeReport, RunReport
from dativo.runs import DatasetRun

log = logging.getLogger("dativo.executors.ray")

POLL_S = 0.25
"""How often the driver looks at the progress counter while it waits for results."""
CANCEL_GRACE_S = 10.0
"""How long a failed run waits for its cancelled tasks to abort what they wrote."""
PROBE_TIMEOUT_S = 5.0
"""How long the driver tries to reach the cluster's address before it gives up."""
CLIENT_INIT_ATTEMPTS = 3
"""Tries to join through Ray Client: its server starts a process per driver, which may fail under load."""
RETRY_PAUSE_S = 2.0
"""The pause before the next try, times the tries so far."""

Work = Callable[..., SplitResult]
"""The body of a split task (``dativo.engine.run_split``): ``(task, counter) -> SplitResult``."""


class Counter:
    """The run's progress counter on the cluster: the rows its splits read."""

    def __init__(self) -> None:
        self.rows = 0
        self.taken = 0

    def add(self, rows: int) -> None:
        """Count ``rows`` more rows read somewhere in the cluster."""
        self.rows += rows

    def take(self) -> int:
        """The rows counted since the last call."""
        rows, self.taken = self.rows - self.taken, self.rows
        return rows


@dataclass
class _Node:
    splits: int = 0
    rows: int = 0
    seconds: float = 0.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor: ray needs the ray package, which is not installed",
            hint="Install it with `pip install 'dativo[ray]'` on the driver and on every node (the same version).",
        ) from None
    return ray


class RayExecutor:
    """One run's connection to a Ray cluster, and the splits it runs there (see the module's docstring).

    Args:
        job: The validated job (its ``executor`` says where the cluster is and what each task reserves).
        run_id: The run's id.
        work_dir: The run's work directory.
        work: The task body, :func:`dativo.engine.run_split`.

    Raises:
        ConfigError: From :meth:`__enter__`: the job names places only the driver reaches, ray is missing,
            or no node offers the resources a task asks for.
        ConnectionFailed: From :meth:`__enter__`: the cluster cannot be reached.
    """

    def __init__(self, job: JobConfig, *, run_id: str, work_dir: Path, work: Work) -> None:
        self.job = job
        self.config = job.executor
        self.run_id = run_id
        self.work_dir = work_dir
        self.work = work
        self._ray: Any = None
        self._connected_here = False
        self._counter: Any = None
        self._nodes: dict[str, _Node] = {}
        self._retries = 0

    # --- the connection ---------------------------------------------------------------------------------

    def __enter__(self) -> RayExecutor:
        refuse_unreachable(self.job, self.work_dir)
        ray = self._ray = _ray()
        if not ray.is_initialized():
            self._connect(ray)
        elif uploads := _uploads(self._runtime_env()):
            raise ConfigError(
                f"executor.runtime_env names local folders ({', '.join(uploads)}), which Ray "
                "uploads only when Dativo joins the cluster itself, but this process had joined Ray already",
                job=self.job.name,
                hint="Run the job with `dativo run`, or give py_modules/working_dir as remote URIs (s3://…, "
                "https://….zip), or install the plugin on every node.",
            )
        try:
            self._check_resources(ray)
            self._counter = ray.remote(num_cpus=0)(Counter).remote()
            self._warm(ray)
        except BaseException:
            self._disconnect()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._disconnect()

    @property
    def address(self) -> str:
        """The cluster's address as configured (``auto`` when unset)."""
        return self.config.address or "auto"

    def _connect(self, ray: Any) -> None:
        address = self.address
        if address != "auto":
            self._probe(address)
        attempts = CLIENT_INIT_ATTEMPTS if address.startswith("ray://") else 1
        for attempt in range(1, attempts + 1):
            try:
                # A runtime_env given here applies to every task and may upload local folders (py_modules,
                # working_dir); Ray refuses those in a task's own options.
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                         namespace="dativo", configure_logging=False,
                         runtime_env=self._runtime_env() if self.config.runtime_env else None)
                break
            except Exception as exc:
                if attempt < attempts and _session_not_started(exc):  # Ray has disconnected: join again
                    log.warning("the Ray Client server at %s did not start a session for this driver (%s); "
                                "trying again", address, _first_line(exc))
                    time.sleep(RETRY_PAUSE_S * attempt)
                    continue
                raise self._not_joined(address, exc) from None
        self._connected_here = True
        _quiet_driver(ray)

    def _not_joined(self, address: str, exc: BaseException) -> ConnectionFailed:
        return ConnectionFailed(
            f"cannot join the Ray cluster at {address}: {_first_line(exc)}",
            job=self.job.name,
            hint="Start the cluster (`ray start --head` on the head node), check executor.address or "
            "--address (auto, host:port of the head's GCS, ray://host:port for Ray Client), use the same "
            "ray version as the cluster, or run with --executor local.",
        )

    def _probe(self, address: str) -> None:
        """Fail fast when nothing listens at ``address`` (Ray itself retries for a long while)."""
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConnectionFailed(
                f"cannot reach the Ray cluster at {address}: {reason}",
                job=self.job.name,
                hint="Check executor.address or --address and that the cluster's head is running "
                "(`ray status` on it); or run with --executor local.",
            ) from None

    def _disconnect(self) -> None:
        ray = self._ray
        if ray is None:
            return
        if self._counter is not None:
            try:
                ray.kill(self._counter)
            except Exception as exc:  # the cluster may already be gone; the actor dies with the driver
                log.debug("progress counter not stopped: %s", exc)
            self._counter = None
        if self._connected_here:
            ray.shutdown()  # this driver leaves; the cluster keeps running
            self._connected_here = False

    def _check_resources(self, ray: Any) -> None:
        """Refuse a task no alive node could ever run (Ray would wait for such a node forever)."""
        wanted = self._reserved()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(have.get(k, 0) >= v for k, v in wanted.items()) for have in nodes):
            return
        offered = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(have.items()) if not k.startswith("node:"))
                            for have in nodes) or "no alive node"
        raise ConfigError(
            f"executor.resources: no node of the Ray cluster at {self.address} offers "
            f"{', '.join(f'{k}={v:g}' for k, v in wanted.items())} for one split task (nodes: {offered})",
            job=self.job.name,
            hint="Ask for what one node has, or add nodes that offer it.",
        )

    def _warm(self, ray: Any) -> None:
        """Start and warm one worker per split slot while the driver checks, discovers and plans.

        Ray starts worker processes per driver; each imports Dativo and the job's built-in connectors (a
        few CPU seconds). Done now, it overlaps the driver's own work, and the split tasks reuse the
        warmed processes (same resources, same job).
        """
        slots = max(1, min(self.job.source.parallelism, int(ray.cluster_resources().get("CPU", 1))))
        warm = ray.remote(warm_worker)
        options = {k: v for k, v in self._options(Split(dataset="", id="warm")).items()
                   if k not in ("max_retries", "retry_exceptions", "name")}
        for _ in range(slots):
            warm.options(**options, name=f"dativo:{self.job.name}:warm").remote(
                self.job.source.type, self.job.target.type)

    def _reserved(self) -> dict[str, float]:
        wanted = {"CPU": 1.0, **{k: float(v) for k, v in self.config.resources.items()}}
        return {k: v for k, v in wanted.items() if v > 0}

    def _options(self, split: Split) -> dict[str, Any]:
        resources = dict(self._reserved())
        options: dict[str, Any] = {
            "num_cpus": resources.pop("CPU", 0),
            "max_retries": self.config.max_retries,
            "retry_exceptions": False,  # a plugin's own failure comes back as a value and is not retried
            "name": f"dativo:{self.job.name}:{split.dataset}:{split.id}",
        }
        if "GPU" in resources:
            options["num_gpus"] = resources.pop("GPU")
        if "memory" in resources:
            options["memory"] = resources.pop("memory")
        if resources:
            options["resources"] = resources
        if self.config.runtime_env and not self._connected_here:  # else the connection carries it
            options["runtime_env"] = self._runtime_env()
        return options

    def _runtime_env(self) -> dict[str, Any]:
        """``executor.runtime_env`` with relative local folders resolved against the job file's folder."""
        env = dict(self.config.runtime_env or {})
        base = self.job.path.parent.resolve() if self.job.path else Path.cwd()

        def local(entry: Any) -> Any:
            if isinstance(entry, str) and "://" not in entry and not Path(entry).is_absolute():
                candidate = base / entry
                return str(candidate) if candidate.exists() else entry
            return entry

        if "working_dir" in env:
            env["working_dir"] = local(env["working_dir"])
        if isinstance(env.get("py_modules"), list):
            env["py_modules"] = [local(entry) for entry in env["py_modules"]]
        return env

    # --- the splits -------------------------------------------------------------------------------------

    def check_dataset(self, dataset: Dataset) -> None:
        """Refuse a dataset whose schema the driver does not know before the splits run.

        Raises:
            ConfigError: ``discover`` declared no schema for ``dataset``.
        """
        if dataset.schema is None:
            raise ConfigError(
                f"executor: ray needs the schema of dataset '{dataset.name}' before any split runs, and the "
                "reader's discover() declared none",
                job=self.job.name,
                hint="Declare the schema in the reader's discover() (a Python plugin: its `schema` attribute), "
                "or run with --executor local, where the first batch's schema is adopted. No target was created.",
            )

    def run(self, run: DatasetRun, splits: Sequence[Split], mode: Mode, *, custom: tuple[bool, bool],
            on_rows: Callable[[int], None] | None = None, counters: Mapping[str, Counters] | None = None) -> None:
        """Run every split of ``run`` on the cluster and add each result to ``run``.

        Args:
            run: The dataset's run, with its target prepared.
            splits: Its splits, checked.
            mode: The target's write mode.
            custom: Whether the reader and the writer are the job's custom implementations (a fallback run
                uses the built-ins on the workers too).
            on_rows: The driver's progress callback.
            counters: The driver's reader and writer counters (by role), which each split's counts join.

        Raises:
            DativoError: The first split that failed (its error names the node), after the others were
                cancelled; the files already received are in ``run.written`` for the engine to abort.
        """
        ray = self._ray
        schema = run.schema
        assert schema is not None  # check_dataset refused the rest
        tracker = run.tracker
        remote = ray.remote(self.work)
        pending: dict[Any, Split] = {}
        for split in splits:
            task = SplitTask(
                job=self.job, run_id=self.run_id, work_dir=str(self.work_dir), custom=custom,
                dataset=run.dataset, schema=schema, previous_state=run.previous_state,
                cursor=tracker.column if tracker else None,
                key_columns=tracker.key_columns if tracker else (), split=split, mode=mode,
            )
            pending[remote.options(**self._options(split)).remote(task, self._counter)] = split
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                self._progress(on_rows)
                for ref in done:
                    split = pending.pop(ref)
                    self._merge(run, self._result(ref, split, custom), counters or {})
            self._progress(on_rows)
        except BaseException:
            self._cancel(list(pending))
            raise

    def _result(self, ref: Any, split: Split, custom: tuple[bool, bool]) -> SplitResult:
        ray = self._ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RuntimeEnvSetupError as exc:
            raise ConfigError(
                f"executor.runtime_env could not be set up for split '{split.id}': {_first_line(exc)}",
                job=self.job.name, hint="Check the packages and folders it names; they are installed on each node.",
            ) from None
        except ray.exceptions.RayError as exc:
            raise self._died(split, exc, custom) from None
        if not isinstance(result, SplitResult):
            raise PluginFailed(f"split '{split.id}' returned {type(result).__name__} from its Ray task",
                               job=self.job.name)
        if result.error is not None:
            raise result.error
        for warning in result.warnings:  # into the driver's log, and so into the run report
            log.warning("%s (split %s on %s)", warning, split.id, result.node)
        return result

    def _died(self, split: Split, exc: BaseException, custom: tuple[bool, bool]) -> DativoError:
        """The error of a split whose task failed on every attempt without returning (its worker died)."""
        attempts = self.config.max_retries + 1
        message = (f"split '{split.id}' of dataset '{split.dataset}' failed on every attempt ({attempts}): "
                   f"{type(exc).__name__}: {_first_line(exc)}")
        hint = ("Its worker process or node died (killed, out of memory, or a crash inside native plugin code); "
                "see the Ray logs of that node, raise executor.max_retries or executor.resources.memory.")
        if custom[0] != custom[1]:  # one custom side: its code is what can bring a worker down
            role = "reader" if custom[0] else "writer"
            impl = (self.job.source.reader if custom[0] else self.job.target.writer).implementation
            return PluginFailed(message, role=role, stage="read" if custom[0] else "write",
                                job=self.job.name, plugin=str(impl), hint=hint)
        return DativoError(message, job=self.job.name, hint=hint)

    def _merge(self, run: DatasetRun, result: SplitResult, counters: Mapping[str, Counters]) -> None:
        if result.written is not None:
            run.add(result.written, result.rows, result.tracker)
        for role, values in result.counters.items():
            if role in counters:
                counters[role].merge(values, f"the {role} of split '{result.split}' on {result.node}")
        self._retries += result.attempt
        node = self._nodes.setdefault(result.node, _Node())
        node.splits += 1
        node.rows += result.rows
        node.seconds += result.seconds

    def _progress(self, on_rows: Callable[[int], None] | None) -> None:
        if on_rows is None or self._counter is None:
            return
        try:
            rows = self._ray.get(self._counter.take.remote(), timeout=PROBE_TIMEOUT_S)
        except Exception as exc:  # the display only: the results carry the real counts
            log.debug("progress not read: %s", exc)
            return
        if rows:
            on_rows(rows)

    def _cancel(self, refs: list[Any]) -> None:
        """Cancel tasks still running (each aborts what it wrote) and give them a moment to do it."""
        ray = self._ray
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception as exc:
                log.debug("cancel failed: %s", exc)
        if refs:
            try:
                ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            except Exception as exc:
                log.debug("waiting for cancelled tasks failed: %s", exc)

    def describe(self, report: RunReport) -> None:
        """Add the executor, per-node figures and retries to ``report``."""
        report.executor = "ray"
        report.retries = self._retries
        report.nodes = [
            NodeReport(node=name, splits=n.splits, rows=n.rows, seconds=round(n.seconds, 3),
                       rows_per_s=round(n.rows / n.seconds, 1) if n.seconds > 0 else 0.0)
            for name, n in sorted(self._nodes.items())
        ]


def _uploads(env: dict[str, Any]) -> list[str]:
    """The local folders and files of a runtime_env (``working_dir``, ``py_modules``) that Ray would upload."""
    entries = [env.get("working_dir"), *(env.get("py_modules") or [])]
    return [e for e in entries if isinstance(e, str) and "://" not in e]


def warm_worker(source: str, target: str) -> None:
    """Import the built-in connectors of ``source`` and ``target`` (the bulk of a worker's start-up)."""
    for role, name in (("reader", source), ("writer", target)):
        try:
            builtin_for(role, name)  # type: ignore[arg-type]
        except Exception as exc:  # a custom connector type has no built-in: nothing to warm
            log.debug("nothing to warm for %s %s: %s", role, name, exc)


def _quiet_driver(ray: Any) -> None:
    """Keep Ray's own cluster messages off this process's stdout (they would corrupt ``dativo run --json``).

    Ray prints the errors its raylets report ("a worker died …") to the driver's stdout whatever
    ``log_to_driver`` says; what they tell is in Dativo's own error and report (``retries``), and in the
    cluster's logs.
    """
    module = getattr(getattr(ray, "_private", None), "worker", None)
    if module is not None and hasattr(module, "_worker_logs_enabled"):
        module._worker_logs_enabled = False


def _session_not_started(exc: BaseException) -> bool:
    """Ray Client's server could not start this driver's session (a transient failure of the cluster)."""
    return isinstance(exc, ConnectionError) and str(exc).startswith("Initialization failure from server")


def _first_line(exc: BaseException) -> str:
    """The first line of the message; a header ending in ``:`` gets the last line of what follows it (Ray
    Client sends the server's traceback, whose last line says what failed)."""
    lines = [line.strip() for line in (str(exc).strip() or type(exc).__name__).splitlines() if line.strip()]
    text = f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:500]
