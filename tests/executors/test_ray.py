"""``executor: ray``: the same jobs on a real two-node Ray cluster, with the guarantees of a local run.

Postgres → Iceberg (REST catalog, S3 on SeaweedFS) read by the Python, Rust and Go readers must give the
local executor's table row for row; worker processes killed at random moments must leave the table at the
old snapshot or the complete new one, and the job, retried by Ray, must load exactly the source rows; a killed
driver publishes nothing; a plugin missing on a worker, a local target and an unreachable cluster are each
one clear error.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.table import Table

from dativo.config import parse_job
from dativo.engine import Engine
from dativo.errors import ConfigError, ConnectionFailed, PluginNotFound
from tests.conftest import subprocess_env
from tests.fixtures.postgres import PgSchema
from tests.fixtures.ray_cluster import RayCluster
from tests.fixtures.s3 import S3Server, free_ports

MILLION = 1_000_000
SEED = 19


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_driver(ray_cluster: RayCluster) -> Iterator[RayCluster]:
    """This test process joined to the cluster once: in-process runs reuse the connection."""
    import ray

    ray.init(address=ray_cluster.address, log_to_driver=False, namespace="dativo", configure_logging=False)
    try:
        yield ray_cluster
    finally:
        ray.shutdown()


@pytest.fixture
def namespace() -> str:
    return f"ray_{uuid.uuid4().hex[:10]}"


def lake(server: S3Server) -> RestCatalog:
    return RestCatalog("reader", **server.iceberg_properties())


def job_dict(pg: PgSchema, server: S3Server, namespace: str, table: str, *, executor: str = "ray",
             address: str | None = None, parallelism: int = 4, implementation: str | None = None,
             fallback: str = "fail", mode: str = "append", **executor_keys: Any) -> dict[str, Any]:
    reader: dict[str, Any] = {"type": "default"}
    if implementation:
        reader = {"type": "custom", "implementation": implementation, "fallback": fallback}
    executor_block: dict[str, Any] = {"type": executor}
    if executor == "ray":
        executor_block.update(max_retries=3, **({"address": address} if address else {}), **executor_keys)
    source: dict[str, Any] = {"type": "postgres", "connection": {"dsn": pg.dsn}, "tables": [pg.table(table)],
                              "parallelism": parallelism, "reader": reader}
    if implementation != "go_postgres":  # the Go reader always cuts `parallelism` splits; it has no such key
        source["min_split_bytes"] = 1
    return {
        "version": 1,
        "name": "orders_ray",
        "source": source,
        "target": {"type": "iceberg", "namespace": namespace, "table": table, "mode": mode,
                   "catalog": server.rest_catalog()},
        "executor": executor_block,
    }


def write_job(folder: Path, job: dict[str, Any]) -> Path:
    path = folder / f"{job['name']}.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def run_in_process(folder: Path, job: dict[str, Any]) -> Any:
    path = write_job(folder, job)
    return Engine(parse_job(path.read_text(), source=path), work_dir=folder / ".dativo").run()


def sorted_rows(table: Table) -> pa.Table:
    return table.scan().to_arrow().sort_by("id")


ORDERS_DDL = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer text, amount numeric(12, 2), placed timestamptz, flag boolean,
    note text
);
INSERT INTO orders
SELECT g, 'customer ' || (g % 977), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second',
       g % 3 = 0, CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 40) END
FROM generate_series(1, 40000) AS g;
"""


# --- results identical to the local executor ----------------------------------------------------------------


def test_a_cpp_native_reader_runs_on_the_workers_like_locally(
    ray_driver: RayCluster, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    from tests.examples.test_cpp_fixedwidth import LIB, columns, render, sample

    data = tmp_path / "data"  # a folder every node mounts at the same path (here: one machine)
    data.mkdir()
    for part in range(3):
        rows = sample(4004, seed=part).slice(4 if part else 0, 4000)  # the edge ids once: ids stay unique
        (data / f"part-{part}.txt").write_bytes(render(rows))

    def job(ns: str, executor: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": 1, "name": "fixedwidth_ray", "executor": executor,
            "source": {"type": "fixedwidth", "path": str(data / "*.txt"), "columns": columns(), "parallelism": 3,
                       "reader": {"type": "custom", "implementation": {"lib": str(LIB)}, "fallback": "fail",
                                  "options": {"min_split_bytes": 1, "batch_size": 1000}}},
            "target": {"type": "iceberg", "namespace": ns, "table": "accounts", "catalog": s3_server.rest_catalog()},
        }

    run_in_process(tmp_path, job(namespace + "_local", {"type": "local"}))
    report = run_in_process(tmp_path, job(namespace, {"type": "ray", "max_retries": 3,
                                                      "shared_paths": [str(data)]}))
    expected = lake(s3_server).load_table((namespace + "_local", "accounts")).scan().to_arrow().sort_by("id")
    got = lake(s3_server).load_table((namespace, "accounts")).scan().to_arrow().sort_by("id")
    assert expected.num_rows == 12_000 and got.equals(expected)
    assert report.executor == "ray" and report.reader.language == "c++" and not report.fallback_used
    assert report.datasets[0].splits >= 3 and sum(n.rows for n in report.nodes) == 12_000


@pytest.mark.parametrize("implementation", [None, "rust_postgres", "go_postgres"],
                         ids=["python", "rust", "go"])
def test_postgres_to_iceberg_on_s3_matches_the_local_executor(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
    implementation: str | None,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    local = run_in_process(tmp_path, job_dict(pg_schema, s3_server, namespace + "_local", "orders",
                                              executor="local", implementation=implementation))
    report = run_in_process(tmp_path, job_dict(pg_schema, s3_server, namespace, "orders",
                                               implementation=implementation))

    expected = sorted_rows(lake(s3_server).load_table((namespace + "_local", "orders")))
    got = sorted_rows(lake(s3_server).load_table((namespace, "orders")))
    assert expected.num_rows == 40_000 and local.rows_written == 40_000
    assert got.equals(expected)
    assert report.executor == "ray" and report.rows_written == 40_000 and report.datasets[0].splits == 4
    assert report.reader.implementation == (implementation or "postgres") and not report.fallback_used
    assert sum(n.splits for n in report.nodes) == 4 and sum(n.rows for n in report.nodes) == 40_000
    assert all(n.node for n in report.nodes)


def test_a_driver_outside_the_cluster_runs_the_job_through_ray_client(
    ray_cluster: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    local = job_dict(pg_schema, s3_server, namespace + "_local", "orders", executor="local")
    run_in_process(tmp_path, local)
    job = write_job(tmp_path, job_dict(pg_schema, s3_server, namespace, "orders", executor="local"))

    done = dativo("run", str(job), "--executor", "ray", "--address", ray_cluster.client_address, "--json",
                  cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["executor"] == "ray" and report["rows_written"] == 40_000
    assert sum(n["splits"] for n in report["nodes"]) == 4
    expected = sorted_rows(lake(s3_server).load_table((namespace + "_local", "orders")))
    assert sorted_rows(lake(s3_server).load_table((namespace, "orders"))).equals(expected)


def test_an_incremental_run_resumes_after_the_watermark_the_workers_reported(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    job = job_dict(pg_schema, s3_server, namespace, "orders")
    job["source"]["incremental"] = {"cursor": "id"}
    first = run_in_process(tmp_path, job)
    pg_schema.execute("INSERT INTO orders SELECT g, 'late', 1, now(), true, NULL FROM generate_series(40001, 40100) g")
    second = run_in_process(tmp_path, job)

    rows = sorted_rows(lake(s3_server).load_table((namespace, "orders")))
    assert (first.rows_written, second.rows_written) == (40_000, 100)
    assert rows.column("id").to_pylist() == list(range(1, 40_101))
    assert second.datasets[0].state is not None


# --- clear errors --------------------------------------------------------------------------------------------


MISSING_READER = '''
from dativo.readers.postgres import PostgresReader


class OnlyOnTheDriver(PostgresReader):
    """The built-in reader under another name, importable on the driver only."""
'''


@pytest.fixture
def driver_only_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A reader module on this process's ``sys.path`` only: the cluster's workers cannot import it."""
    folder = tmp_path / "driver_only"
    folder.mkdir()
    name = f"driver_only_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(MISSING_READER, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return f"{name}:OnlyOnTheDriver"


def test_a_plugin_missing_on_a_worker_fails_with_the_node_and_the_plugin(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
    driver_only_module: str,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    job = job_dict(pg_schema, s3_server, namespace, "orders", implementation=driver_only_module)
    with pytest.raises(PluginNotFound) as caught:
        run_in_process(tmp_path, job)
    text = str(caught.value)
    assert "on Ray node " in text and driver_only_module.split(":")[0] in text
    assert "executor.runtime_env" in text and "every node" in text
    catalog = lake(s3_server)
    assert not catalog.load_table((namespace, "orders")).snapshots()  # created by the driver, nothing published


def test_a_plugin_missing_on_a_worker_falls_back_to_the_built_in(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
    driver_only_module: str,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    job = job_dict(pg_schema, s3_server, namespace, "orders", implementation=driver_only_module,
                   fallback="default")
    report = run_in_process(tmp_path, job)
    assert report.fallback_used and "on Ray node" in (report.fallback_reason or "")
    assert report.reader.implementation == "postgres" and report.rows_written == 40_000
    assert sorted_rows(lake(s3_server).load_table((namespace, "orders"))).num_rows == 40_000


def test_runtime_env_ships_a_python_plugin_the_workers_lack(
    ray_cluster: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    package = tmp_path / "shipped" / f"shipped_{uuid.uuid4().hex[:8]}"  # on the driver's PYTHONPATH only
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MISSING_READER, encoding="utf-8")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    env = subprocess_env()
    env["PYTHONPATH"] += os.pathsep + str(package.parent)
    pg_schema.execute(ORDERS_DDL)
    implementation = f"{package.name}:OnlyOnTheDriver"

    def run(**executor_keys: Any) -> subprocess.CompletedProcess[str]:
        job = job_dict(pg_schema, s3_server, namespace, "orders", address=ray_cluster.address,
                       implementation=implementation, **executor_keys)
        return dativo("run", str(write_job(jobs, job)), "--json", cwd=jobs, env=env)

    missing = run()  # the workers cannot import it ...
    assert missing.returncode != 0 and "on Ray node" in missing.stderr and package.name in missing.stderr
    shipped = run(runtime_env={"py_modules": [str(package)]})  # ... until runtime_env ships it
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    report = json.loads(shipped.stdout)
    assert not report["fallback_used"] and report["reader"]["implementation"] == implementation
    assert report["rows_written"] == 40_000 and sum(n["splits"] for n in report["nodes"]) == 4
    assert sorted_rows(lake(s3_server).load_table((namespace, "orders"))).num_rows == 40_000


DIES_ONCE_READER = '''
import os
from pathlib import Path

import pyarrow as pa

from dativo.readers.postgres import PostgresReader

MARKS = Path({marks!r})


class CountsAndDiesOnce(PostgresReader):
    """The built-in reader counting the rows it reads; the first attempt of every split kills its worker after
    counting its first batch (it leaves a mark, so the next attempt goes on)."""

    def read(self, split):
        stream = super().read(split)
        mark = MARKS / split.id.replace("/", "_")

        def batches():
            for batch in stream:
                self.ctx.count("rows.counted", batch.num_rows)
                if not mark.exists():
                    mark.touch()
                    os._exit(1)
                yield batch

        return pa.RecordBatchReader.from_batches(stream.schema, batches())
'''


def test_counts_of_a_split_whose_worker_died_are_not_counted_twice(
    ray_cluster: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    """Each split's first attempt counts, then its worker dies; Ray runs it again. The report counts the
    attempts that returned only: exactly the source's rows."""
    package = tmp_path / "shipped" / f"dies_once_{uuid.uuid4().hex[:8]}"
    package.mkdir(parents=True)
    marks = tmp_path / "marks"  # every node is this machine: one folder they all see
    marks.mkdir()
    (package / "__init__.py").write_text(DIES_ONCE_READER.format(marks=str(marks)), encoding="utf-8")
    env = subprocess_env()
    env["PYTHONPATH"] += os.pathsep + str(package.parent)
    pg_schema.execute(ORDERS_DDL)
    job = job_dict(pg_schema, s3_server, namespace, "orders", address=ray_cluster.address,
                   implementation=f"{package.name}:CountsAndDiesOnce", runtime_env={"py_modules": [str(package)]})
    done = dativo("run", str(write_job(tmp_path, job)), "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["rows_written"] == 40_000 and report["retries"] == 4, report
    assert report["counters"] == {"reader": {"rows.counted": 40_000}}
    assert sorted_rows(lake(s3_server).load_table((namespace, "orders"))).num_rows == 40_000
    assert len(list(marks.iterdir())) == 4


def test_local_runtime_env_folders_need_dativo_to_join_the_cluster_itself(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    job = job_dict(pg_schema, s3_server, namespace, "orders", runtime_env={"py_modules": [str(tmp_path)]})
    with pytest.raises(ConfigError, match="uploads only when Dativo joins the cluster itself"):
        run_in_process(tmp_path, job)


def dativo(*args: str, cwd: Path, timeout: float = 240,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dativo", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or subprocess_env())


def test_a_target_on_the_drivers_disk_is_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("id,name\n1,a\n", encoding="utf-8")
    job = tmp_path / "job.yaml"
    job.write_text(textwrap.dedent("""\
        version: 1
        name: local_lake
        source: {type: csv, path: /mnt/shared/orders.csv}
        target: {type: iceberg, namespace: raw, table: orders}
        executor: {type: ray, address: "127.0.0.1:1", shared_paths: [/mnt/shared]}
        """), encoding="utf-8")

    done = dativo("run", str(job), cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "job 'local_lake'" in message and "executor: ray cannot run this job" in message
    assert "embedded SQLite catalog" in message and "on the driver's disk" in message
    assert "s3://" in message and "executor.shared_paths" in message and "--executor local" in message
    assert "Traceback" not in done.stderr and not (tmp_path / ".dativo").exists()


def test_a_local_path_is_refused_unless_declared_shared(tmp_path: Path) -> None:
    def job(**executor: Any) -> Any:
        return parse_job(yaml.safe_dump({
            "version": 1, "name": "files", "source": {"type": "csv", "path": str(tmp_path / "in.csv")},
            "target": {"type": "parquet", "path": "s3://bucket/out"},
            "executor": {"type": "ray", **executor},
        }), source=tmp_path / "job.yaml")

    from dativo.executors.reach import refuse_unreachable, unreachable

    with pytest.raises(ConfigError, match=r"source\.path: the source path .*in\.csv is on the driver's disk"):
        refuse_unreachable(job(), tmp_path / ".dativo")
    assert unreachable(job(shared_paths=[str(tmp_path)]), tmp_path / ".dativo") == []


def test_a_plugin_sources_file_on_the_drivers_disk_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "accounts.dat"
    data.write_bytes(b"\x00" * 64)

    def job(source: dict[str, Any], **executor: Any) -> Any:
        return parse_job(yaml.safe_dump({
            "version": 1, "name": "mainframe", "source": {"type": "cobol", **source},
            "target": {"type": "parquet", "path": "s3://bucket/out"},
            "executor": {"type": "ray", **executor},
        }), source=tmp_path / "job.yaml")

    from dativo.executors.reach import unreachable

    in_options = {"reader": {"type": "custom", "implementation": "cobol", "options": {"path": str(data)}}}
    [(where, why)] = unreachable(job(in_options), tmp_path / ".dativo")
    assert where == "source.reader.options.path" and str(data) in why and "driver's disk" in why
    [(where, _)] = unreachable(job({"path": [str(tmp_path / "*.dat")]}), tmp_path / ".dativo")
    assert where == "source.path"
    # what a plugin's path means is its own business: one that names nothing here is left to the plugin
    assert unreachable(job({"path": "/api/v1/accounts"}), tmp_path / ".dativo") == []
    assert unreachable(job(in_options, shared_paths=[str(tmp_path)]), tmp_path / ".dativo") == []


def test_an_unreachable_cluster_is_one_clear_error(tmp_path: Path, s3_server: S3Server, pg_schema: PgSchema) -> None:
    [port] = free_ports(1)
    job = write_job(tmp_path, job_dict(pg_schema, s3_server, "never", "orders", executor="local"))

    done = dativo("run", str(job), "--executor", "ray", "--address", f"127.0.0.1:{port}", cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in message and "--executor local" in message
    assert "Traceback" not in done.stderr


class _SessionRefused:
    """Stands in for the ``ray`` module where a Ray Client server refuses to start sessions: that failure of
    the cluster's side cannot be provoked on demand, so this raises what Ray raises then, ``refusals`` times."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.calls = refusals, 0

    def init(self, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n"
                                         "  ...\nRuntimeError: Starting Ray client server failed.\n")


@pytest.mark.parametrize(("refusals", "joins"), [(2, True), (3, False)])
def test_a_ray_client_session_the_server_fails_to_start_is_tried_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusals: int, joins: bool) -> None:
    from dativo.executors import ray as executor

    monkeypatch.setattr(executor, "RETRY_PAUSE_S", 0.0)
    with socket.socket() as listening:  # the probe finds something listening, as at a real head
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"ray://127.0.0.1:{listening.getsockname()[1]}"
        job = parse_job("version: 1\nname: j\nsource: {type: csv, path: a.csv}\ntarget: {type: parquet, path: out}\n"
                        f"executor: {{type: ray, address: '{address}'}}\n")
        cluster = executor.RayExecutor(job, run_id="r", work_dir=tmp_path, work=lambda *args: None)
        ray = _SessionRefused(refusals)
        if joins:
            cluster._connect(ray)
            assert cluster._connected_here and ray.calls == 3
        else:
            with pytest.raises(ConnectionFailed, match="Initialization failure from server: RuntimeError: Starting "
                               "Ray client server failed"):
                cluster._connect(ray)
            assert ray.calls == executor.CLIENT_INIT_ATTEMPTS


def test_a_malformed_address_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "version: 1\nname: j\nsource: {type: csv, path: a.csv}\ntarget: {type: parquet, path: out}\n")
    done = dativo("run", "job.yaml", "--executor", "ray", "--address", "not an address", cwd=tmp_path)
    assert done.returncode == 2 and "is not a Ray cluster address" in done.stderr, done.stderr


# --- worker processes and the driver killed -------------------------------------------------------------------


@pytest.fixture(scope="module")
def million(pg_dsn: str) -> Iterator[PgSchema]:
    """A narrow table of 1M rows, made once for the kill tests (they only read it)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"CREATE TABLE {name}.events (id bigint PRIMARY KEY, v integer NOT NULL)")
        conn.execute(f"INSERT INTO {name}.events SELECT g, g % 1000 FROM generate_series(1, {MILLION}) g")
        conn.execute(f"ANALYZE {name}.events")
    try:
        yield PgSchema(name, pg_dsn)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def current_snapshot(server: S3Server, namespace: str) -> int | None:
    try:
        snapshot = lake(server).load_table((namespace, "events")).current_snapshot()
    except Exception:  # not created yet
        return None
    return snapshot.snapshot_id if snapshot else None


def assert_exactly_the_source(server: S3Server, namespace: str) -> None:
    ids = lake(server).load_table((namespace, "events")).scan(selected_fields=("id",)).to_arrow().column("id")
    assert len(ids) == MILLION
    assert pa.compute.count_distinct(ids).as_py() == MILLION  # none lost, none duplicated
    assert (pa.compute.min(ids).as_py(), pa.compute.max(ids).as_py()) == (1, MILLION)


class Killer(threading.Thread):
    """SIGKILLs a running split worker at seeded random moments; notes the table's snapshot after each kill."""

    def __init__(self, cluster: RayCluster, rng: random.Random, kills: int, look: Callable[[], int | None]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.rng, self.kills, self.look = cluster, rng, kills, look
        self.killed: list[int] = []
        self.seen: list[int | None] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while len(self.killed) < self.kills and not self.stop.is_set():
            if self.stop.wait(self.rng.uniform(0.05, 0.8)):
                return
            workers = self.cluster.split_workers()
            while not workers and not self.stop.wait(0.02):  # the next moment a split runs (a run lasts seconds)
                workers = self.cluster.split_workers()
            if not workers:
                return
            victim = self.rng.choice(workers)
            try:
                victim.send_signal(signal.SIGKILL)
            except Exception:  # it finished meanwhile: try again at the next moment
                continue
            self.killed.append(victim.pid)
            self.seen.append(self.look())


def test_workers_killed_mid_split_are_retried_and_the_table_gets_exactly_the_source(
    ray_driver: RayCluster, million: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    rng = random.Random(SEED)
    job = job_dict(million, s3_server, namespace, "events", mode="overwrite")
    job["executor"]["max_retries"] = 20
    before: int | None = None
    retried = attempt = 0
    # A kill counts once Ray retried the split it hit (a worker killed just after its split ended costs no
    # retry); runs go on until 10 kills have hit running splits.
    while retried < 10 and attempt < 12:
        attempt += 1
        killer = Killer(ray_driver, rng, 4, lambda: current_snapshot(s3_server, namespace))
        killer.start()
        try:
            report = run_in_process(tmp_path, job)
        finally:
            killer.stop.set()
            killer.join()
        after = current_snapshot(s3_server, namespace)
        assert after is not None and after != before
        assert set(killer.seen) <= {before, after}, (attempt, killer.seen)  # the old snapshot, or the new one
        assert_exactly_the_source(s3_server, namespace)
        assert report.rows_written == MILLION and report.retries <= len(killer.killed), (report, killer.killed)
        retried += report.retries
        before = after
    assert retried >= 10, f"only {retried} kills hit a running split in {attempt} runs"


def test_a_killed_driver_publishes_nothing_and_a_rerun_is_exact(
    ray_driver: RayCluster, million: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    rng = random.Random(SEED + 1)
    job = write_job(tmp_path, job_dict(million, s3_server, namespace, "events", address=ray_driver.address))
    driver = subprocess.Popen([sys.executable, "-m", "dativo", "run", str(job), "--json"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    try:
        deadline = time.monotonic() + 120
        while not ray_driver.split_workers() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the splits (a split of this table takes about 1 s)
        assert driver.poll() is None, driver.communicate()
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate()

    assert current_snapshot(s3_server, namespace) is None  # the table may exist: nothing is published in it
    deadline = time.monotonic() + 60
    while ray_driver.split_workers() and time.monotonic() < deadline:  # Ray ends a dead driver's tasks
        time.sleep(0.2)
    assert current_snapshot(s3_server, namespace) is None

    rerun = dativo("run", str(job), "--json", cwd=tmp_path)  # a driver of its own, joining by address
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)  # stdout is the report alone: Ray's own messages stay off it
    assert report["rows_written"] == MILLION and report["executor"] == "ray"
    assert sum(node["rows"] for node in report["nodes"]) == MILLION
    assert_exactly_the_source(s3_server, namespace)
    assert len(lake(s3_server).load_table((namespace, "events")).snapshots()) == 1


# --- a sandboxed plugin: the sandbox is made on the worker's node ------------------------------------------


@pytest.mark.usefixtures("working_bwrap")
def test_a_sandboxed_reader_runs_in_a_sandbox_made_on_the_worker(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    params = conninfo_to_dict(pg_schema.dsn)
    socket = f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}"
    job = job_dict(pg_schema, s3_server, namespace, "orders", implementation="postgres")
    job["source"]["reader"]["sandbox"] = {"enabled": True, "network": [f"unix:{socket}"]}
    report = run_in_process(tmp_path, job)

    rows = sorted_rows(lake(s3_server).load_table((namespace, "orders")))
    assert report.executor == "ray" and report.rows_written == 40_000 and report.datasets[0].splits == 4
    assert rows.column("id").to_pylist() == list(range(1, 40_001))
    assert "sandbox" in report.reader.origin, report.reader
    assert sum(n.splits for n in report.nodes) == 4


def test_a_sandbox_without_the_network_grant_cannot_reach_the_source_and_publishes_nothing(
    ray_driver: RayCluster, pg_schema: PgSchema, s3_server: S3Server, tmp_path: Path, namespace: str,
    working_bwrap: None,
) -> None:
    pg_schema.execute(ORDERS_DDL)
    job = job_dict(pg_schema, s3_server, namespace, "orders", implementation="postgres")
    job["source"]["reader"]["sandbox"] = {"enabled": True}  # no network: the reader cannot reach Postgres
    with pytest.raises(ConnectionFailed, match="PGSQL") as caught:
        run_in_process(tmp_path, job)
    assert "runs in the sandbox, which gives it no network: grant the server in source.reader.sandbox.network" \
        in str(caught.value), caught.value
    assert not lake(s3_server).list_tables(namespace) or not sorted_rows(
        lake(s3_server).load_table((namespace, "orders"))).num_rows
