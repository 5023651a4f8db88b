"""The benchmark's PostgreSQL: an embedded server on loopback TCP (peers such as ConnectorX need TCP), or ``--dsn``.

The embedded server uses the binaries of the ``pgserver`` wheel and keeps its data in ``bench/.cache/pg`` so
the generated tables survive between runs. ``pgserver`` creates the cluster (and, under root, the
``pgserver`` OS user that owns it); this module starts it with a TCP listener of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass
class Server:
    """A running server: its libpq URI and how to stop it (``None`` for an external one)."""

    dsn: str
    psql: str
    data_dir: Path | None = None
    user: str | None = None

    def stop(self) -> None:
        """Stop the embedded server (a no-op for ``--dsn``)."""
        if self.data_dir is None:
            return
        subprocess.run(
            [str(_bin("pg_ctl")), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            user=self.user, check=False, capture_output=True,
        )


def _bin(name: str) -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def external(dsn: str) -> Server:
    """A server the user runs; ``psql`` from PATH, else the wheel's."""
    psql = shutil.which("psql") or str(_bin("psql"))
    return Server(dsn=dsn, psql=psql)


def embedded() -> Server:
    """Start (creating on first use) the cached benchmark cluster on a free loopback port."""
    import pgserver

    data = CACHE / "pg"
    if not (data / "PG_VERSION").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        pgserver.get_server(data, cleanup_mode="stop").cleanup()  # creates the cluster, then stops it
    user = "pgserver" if os.geteuid() == 0 else None
    ctl = [str(_bin("pg_ctl")), "-D", str(data)]
    if subprocess.run([*ctl, "status"], user=user, capture_output=True).returncode == 0:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], user=user, capture_output=True)  # left by a killed run
    port = _free_port()
    sockets = CACHE / "sock"
    sockets.mkdir(exist_ok=True)
    sockets.chmod(0o777)
    settings = f"-h 127.0.0.1 -p {port} -k {sockets} -c shared_buffers=512MB -c max_wal_size=4GB"
    subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(data), "-w", "-o", settings, "-l", str(data / "bench.log"), "start"],
        user=user, check=True, capture_output=True,
    )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        if subprocess.run([str(_bin("pg_isready")), "-d", dsn], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    return Server(dsn=dsn, psql=str(_bin("psql")), data_dir=data, user=user)
