""":func:`run_kit`: the conformance kit, from ``IMPL`` to the report.

The order: ``load`` (resolve, configure, instantiate), the common checks, the reader's or the writer's own
checks, the differential against the built-in (``--against default``), the performance line, and the
sandboxed subset (``--sandbox``): for a reader ``sandbox-load``, ``sandbox-discover``, ``sandbox-plan`` and
``sandbox-read`` (the same datasets, splits and rows as unsandboxed); for a writer ``sandbox-load`` and
``sandbox-write-commit``. The other checks are not repeated inside the sandbox; the report says so.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from dativo.api import Role
from dativo.config import JobConfig
from dativo.errors import ConfigError, PluginIncompatible, PluginNotFound
from dativo.kit.checks import Checklist, Failed, Skipped, UsageError
from dativo.kit.differential import compare, key_of, reader_source, table_source
from dativo.kit.readers import ReaderChecks, ReaderRun, split_json
from dativo.kit.report import KitReport
from dativo.kit.rows import multiset_difference, read_pass
from dativo.kit.subject import (
    Session,
    Subject,
    TemporaryTarget,
    configure,
    load_kit_job,
    parse_implementation,
    resolve,
    sandbox_for,
    temporary_target,
)
from dativo.kit.writers import WriterChecks, rows
from dativo.plugins.bwrap import identity
from dativo.registry import PluginSpec, has_builtin

AGAINST = ("default",)
"""What ``--against`` accepts: the built-in implementation of the plugin's connector type."""

_COMMON = ["load", "options-schema", "options-enforced", "check", "check-broken-config"]
CHECKS: dict[str, list[str]] = {
    "reader": [*_COMMON, "discover", "plan-json", "plan-deterministic", "read-deterministic", "schema",
               "incremental-future", "incremental-resume", "cancel", "secrets", "differential",
               "sandbox-load", "sandbox-discover", "sandbox-plan", "sandbox-read"],
    "writer": [*_COMMON, "write-commit", "idempotent-commit", "empty-input", "concurrent-splits",
               "schema-evolution", "abort", "crash-before-commit", "secrets", "differential",
               "sandbox-load", "sandbox-write-commit"],
}
"""Every check each role can get, in the order they run (``sandbox``: the placeholder when not asked for)."""


def parse_options(options: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``--options``: a JSON/YAML mapping (or its text).

    Raises:
        UsageError: It is not a mapping.
    """
    if options is None or isinstance(options, dict):
        return options
    try:
        value = yaml.safe_load(options)
    except yaml.YAMLError as exc:
        raise UsageError(f"--options is not JSON or YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--options must be a mapping such as '{{\"path\": \"data.csv\"}}', not {options!r}")
    return value


def run_kit(
    implementation: Any,
    *,
    kind: Role | None = None,
    job: str | Path | JobConfig | None = None,
    options: str | dict[str, Any] | None = None,
    against: str | None = None,
    sandbox: bool = False,
    perf: bool = True,
    work_dir: Path | None = None,
    keep: bool = False,
) -> KitReport:
    """Run the conformance kit on one implementation.

    Args:
        implementation: What a job's ``implementation:`` accepts (a name, a dotted path, a mapping such as
            ``{"lib": "./libreader.so"}`` or ``{"command": [...]}``, its JSON/YAML text, a ``.so`` path).
        kind: ``reader`` or ``writer``; by default it is resolved as a reader, else as a writer (a name that
            is both, such as ``parquet``, is the reader unless ``kind`` says ``writer``).
        job: A job file (or a loaded job): the plugin is configured from its source (reader) or target
            (writer) section; a writer's location is replaced by a temporary one.
        options: The plugin's options (JSON/YAML text or a mapping); with a job they replace the job's.
        against: ``default``: compare the plugin with the built-in of its connector type on the job.
        sandbox: Also run the sandboxed subset.
        perf: Measure the performance line.
        work_dir: Where the kit's temporary folder is made.
        keep: Keep the temporary folder (for debugging).

    Returns:
        The report (``report.exit_code``, ``report.level``, ``report.check(name)``).

    Raises:
        ConfigError: A usage or configuration error (exit code 2): nothing was checked.
    """
    started = time.monotonic()
    if kind not in (None, "reader", "writer"):
        raise UsageError(f"--kind must be reader or writer, not {kind!r}")
    if against is not None and against not in AGAINST:
        raise UsageError(f"--against accepts {', '.join(AGAINST)} (the built-in implementation), not {against!r}")
    job_config = load_kit_job(job)
    if against is not None and job_config is None:
        raise UsageError("--against default compares the plugin with the built-in on your own job: give --job JOB")
    base = job_config.path.parent.absolute() if job_config is not None and job_config.path else Path.cwd()
    impl = parse_implementation(implementation, base=base)
    given = parse_options(options)
    secret = f"dativoKitFake{uuid.uuid4().hex[:12]}"
    checks = Checklist(secret)
    subject = Subject(role=kind or "reader", implementation=impl, job=job_config)
    report = KitReport(plugin={"implementation": subject.label, "role": subject.role},
                       job=str(job_config.path) if job_config is not None and job_config.path else None,
                       against=against, sandbox=sandbox)
    with Session(work_dir=work_dir, keep=keep) as session:
        try:
            _Kit(session, subject, checks, report, secret, given, kind).run(against=against, sandbox=sandbox, perf=perf)
        finally:
            report.checks = checks.checks
    report.seconds = time.monotonic() - started
    return report


class _Kit:
    """One run's steps (see the module's docstring)."""

    def __init__(self, session: Session, subject: Subject, checks: Checklist, report: KitReport, secret: str,
                 options: dict[str, Any] | None, kind: Role | None) -> None:
        self.session = session
        self.subject = subject
        self.checks = checks
        self.report = report
        self.secret = secret
        self.options = options
        self.kind = kind
        self.target: TemporaryTarget | None = None
        self.work = session.tmp / "work"
        self.sandbox_work = self.work
        self.is_builtin = False

    def run(self, *, against: str | None, sandbox: bool, perf: bool) -> None:
        main = self.load()
        if main is None:
            return
        builtin = self.builtin(against)
        if self.subject.role == "reader":
            readers = ReaderChecks(self.session, self.subject, self.checks, self.secret, main)
            run = readers.all()
            self.differential(against, builtin, lambda: self.reader_differential(builtin, run))
            if perf:
                self.measure(lambda: readers.perf("plugin"), lambda: readers.perf("built-in", spec=builtin), builtin)
                self.report.perf = run.perf
            self.sandboxed(sandbox, lambda: self.sandboxed_reader(run))
        else:
            assert self.target is not None
            writers = WriterChecks(self.session, self.subject, self.checks, self.secret, main, self.target, self.work)
            wrun = writers.all()
            if not wrun.readback:
                self.report.notes.append(wrun.readback_note)
            self.differential(against, builtin, lambda: self.writer_differential(builtin, writers))
            if perf:
                self.measure(lambda: writers.perf("plugin"),
                             lambda: writers.perf("built-in", spec=builtin, target=self.builtin_target(builtin)),
                             builtin)
                self.report.perf = wrun.perf
            self.sandboxed(sandbox, lambda: self.sandboxed_writer())

    # --- load ---------------------------------------------------------------------------------------------

    def load(self) -> Any:
        subject = self.subject
        main = None
        with self.checks.check("load") as out:
            role, spec = resolve(self.session.host, subject.implementation, self.kind)
            subject.role, subject.spec = role, spec
            self.report.plugin.update(
                role=role, name=spec.name, origin=spec.origin, version=spec.version, language=spec.language,
                api_version=spec.api_version, connector=spec.connector,
            )
            configure(subject, self.options)
            self.report.plugin["connector"] = subject.connector
            settings, options = subject.settings, subject.options
            if role == "writer":
                self.target = temporary_target(subject, spec, self.session.folder("target"))
                settings, options = self.target.settings, self.target.options
                self.report.notes.append(f"the writer writes into a temporary target ({self.target.how})")
            try:
                main = self.session.instance(subject, settings=settings, options=options, work_dir=self.work)
            except ConfigError as exc:
                if isinstance(exc, UsageError):
                    raise
                raise UsageError(f"the configuration of {spec.name} is invalid: {exc.message}",
                                 plugin=spec.name, hint=exc.hint) from None
            source = f"the job's {subject.section} section" if subject.job is not None else (
                "--options" if self.options else "no options")
            out.reason = (f"{spec.origin} {role} {spec.name} {spec.version} ({spec.language}), API "
                          f"{spec.api_version or '-'}; configured from {source}")
        return main

    def builtin(self, against: str | None) -> PluginSpec | None:
        """The built-in of the subject's connector type, through the host (``None``: there is none)."""
        connector, role = self.subject.connector, self.subject.role
        spec: PluginSpec | None = None
        if connector and has_builtin(role, connector):
            try:
                spec = self.session.host.resolve(role, connector)
            except (PluginNotFound, PluginIncompatible) as exc:  # its optional dependencies are not installed
                self.report.notes.append(f"the built-in {connector} {role} cannot load: {exc.message}")
        if against is not None and spec is None:
            raise UsageError(f"--against default: the connector type '{connector}' has no built-in {role} to "
                             f"compare {self.subject.label} with")
        self.is_builtin = spec is not None and self.subject.spec is not None and spec.cls is self.subject.spec.cls
        return spec

    # --- differential -------------------------------------------------------------------------------------

    def differential(self, against: str | None, builtin: PluginSpec | None, work: Any) -> None:
        role = self.subject.role
        if builtin is None:
            connector = self.subject.connector
            self.checks.skip("differential", "differential", f"no built-in {connector} {role} to compare with"
                             if connector else f"no connector type, so no built-in {role} to compare with")
        elif self.is_builtin:
            self.checks.skip("differential", "differential", f"the plugin is the built-in {builtin.name} {role}")
        elif against is None:
            self.checks.skip("differential", "differential",
                             f"not asked for: --against default compares it with the built-in {builtin.name}",
                             blocks=True)
        else:
            with self.checks.check("differential", "differential") as out:
                out.reason = work()

    def reader_differential(self, builtin: PluginSpec | None, run: ReaderRun) -> str:
        assert builtin is not None
        self.checks.require("plan-json")
        theirs = self.session.instance(self.subject, spec=builtin, options={})
        try:
            datasets = {d.name: d for d in theirs.discover()}
            ours = {d.name: d for d in run.datasets}
            if ours.keys() != datasets.keys():
                raise Failed(f"the plugin reads dataset(s) {sorted(ours)}, the built-in {builtin.name} "
                             f"{sorted(datasets)}")
            diffs = []
            for name, dataset in ours.items():
                other = datasets[name]
                key = key_of(dataset, other)
                diffs.append(compare(
                    name, reader_source(run.reader, run.splits[name]),
                    reader_source(theirs, theirs.plan(other, None)), key=key, schemas=(dataset.schema, other.schema),
                ))
        finally:
            self.session.close(theirs)
        self.report.differential = diffs
        wrong = [d for d in diffs if not d.identical]
        if wrong:
            raise Failed(wrong[0].summary())
        rows_ = sum(d.rows_plugin for d in diffs)
        keys = sorted({", ".join(d.keyed_by) or "whole rows" for d in diffs})
        return (f"{len(diffs)} dataset(s), {rows_:,} row(s): schemas and rows identical to the built-in "
                f"{builtin.name} (matched by {'; '.join(keys)})")

    def builtin_target(self, builtin: PluginSpec | None) -> TemporaryTarget:
        assert builtin is not None
        return temporary_target(self.subject, builtin, self.session.folder("builtin-target"), own_options=False)

    def writer_differential(self, builtin: PluginSpec | None, writers: WriterChecks) -> str:
        assert builtin is not None
        self.checks.require("write-commit")
        ours = writers.run.committed.get("kit_roundtrip")
        if ours is None:
            raise Skipped(f"the kit cannot read the plugin's target back to compare it with {builtin.name}",
                          blocks=True)
        target = self.builtin_target(builtin)
        other = WriterChecks(self.session, self.subject, Checklist(), self.secret, None, target,
                             self.session.folder("builtin-work"), spec=builtin)
        tables = [rows(1, 300), rows(301, 300)]
        other.commit_run(other.dataset("roundtrip"), tables)
        theirs = other.read_back("kit_roundtrip")
        if theirs is None:
            raise Skipped(f"the kit cannot read the built-in {builtin.name}'s target back", blocks=True)
        diff = compare("kit_roundtrip", table_source(ours), table_source(theirs), key=["id"],
                       schemas=(ours.schema, theirs.schema))
        self.report.differential = [diff]
        if not diff.identical:
            raise Failed(diff.summary())
        return f"the same {diff.rows_plugin:,} rows, read back from both targets, as the built-in {builtin.name} wrote"

    # --- performance --------------------------------------------------------------------------------------

    def measure(self, plugin: Any, beside: Any, builtin: PluginSpec | None) -> None:
        try:
            plugin()
            if builtin is not None and not self.is_builtin:
                beside()
        except Exception as exc:  # a failure here was found by the checks already
            self.report.notes.append(f"the performance line is incomplete: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}")

    # --- sandbox ------------------------------------------------------------------------------------------

    def sandboxed(self, sandbox: bool, work: Any) -> None:
        if not sandbox:
            self.checks.skip("sandbox", "sandbox", "not asked for: --sandbox runs the plugin in the sandbox", blocks=True)
            return
        work()
        self.report.notes.append("the sandbox runs a subset of the checks: " + ", ".join(
            c.name for c in self.checks.checks if c.group == "sandbox"))

    def _sandboxed_spec(self, box: Any) -> PluginSpec:
        return self.session.host.resolve(self.subject.role, self.subject.implementation, box)

    def sandboxed_reader(self, run: ReaderRun) -> None:
        subject = self.subject
        reader = None
        with self.checks.check("sandbox-load", "sandbox") as out:
            box = sandbox_for(subject)
            spec = self._sandboxed_spec(box)
            reader = self.session.instance(subject, spec=spec)
            reader.check()
            grants = ", ".join(box.read_paths) or "no files"
            out.reason = f"loaded and checked in the sandbox (read_paths: {grants})"
        datasets: dict[str, Any] = {}
        with self.checks.check("sandbox-discover", "sandbox") as out:
            self.checks.require("sandbox-load", "discover")
            datasets = {d.name: d for d in reader.discover()}
            ours = {d.name: d for d in run.datasets}
            if datasets.keys() != ours.keys():
                raise Failed(f"sandboxed, it discovers {sorted(datasets)} instead of {sorted(ours)}")
            for name, d in datasets.items():
                if (d.schema is None) != (ours[name].schema is None) or (
                        d.schema is not None and not d.schema.equals(ours[name].schema, check_metadata=False)):
                    raise Failed(f"sandboxed, dataset '{name}' has another schema")
            out.reason = f"the same {len(datasets)} dataset(s) and schemas as unsandboxed"
        splits: dict[str, Any] = {}
        with self.checks.check("sandbox-plan", "sandbox") as out:
            self.checks.require("sandbox-discover", "plan-json")
            for name, d in datasets.items():
                planned = reader.plan(d, None)
                split_json(planned)
                splits[name] = planned
            out.reason = f"{sum(len(s) for s in splits.values())} split(s)"
        with self.checks.check("sandbox-read", "sandbox") as out:
            self.checks.require("sandbox-plan", "read-deterministic")
            total = 0
            for name, d in datasets.items():
                result = read_pass(splits[name], reader.read, expected=d.schema)
                if result.problem:
                    raise Failed(f"sandboxed, dataset '{name}' {result.problem}")
                missing, extra = multiset_difference(run.passes[name].rows, result.rows)
                if missing or extra:
                    raise Failed(f"sandboxed, dataset '{name}' reads {result.count:,} row(s) where unsandboxed it "
                                 f"read {run.passes[name].count:,} ({missing:,} missing, {extra:,} extra)")
                total += result.count
            out.reason = f"the same {total:,} row(s) as unsandboxed"

    def sandboxed_writer(self) -> None:
        subject = self.subject
        assert subject.spec is not None
        spec = None
        target: TemporaryTarget | None = None
        with self.checks.check("sandbox-load", "sandbox") as out:
            folders = [self.session.folder("sandbox-target"), self.session.folder("sandbox-work")]
            who = identity()
            if who.root_host:  # the plugin runs as another uid: let it reach and write the kit's folders
                self.session.tmp.chmod(0o711)
                for folder in folders:
                    os.chown(folder, who.uid, who.gid)
            target = temporary_target(subject, subject.spec, folders[0])
            spec = self._sandboxed_spec(sandbox_for(subject, write_paths=folders))
            writer = self.session.instance(subject, spec=spec, settings=target.settings, options=target.options,
                                           work_dir=folders[1])
            writer.check()
            self.session.close(writer)
            out.reason = "loaded and checked in the sandbox (write_paths: two folders of the kit's)"
            self.sandbox_work = folders[1]
        with self.checks.check("sandbox-write-commit", "sandbox") as out:
            self.checks.require("sandbox-load")
            assert target is not None
            boxed = WriterChecks(self.session, subject, Checklist(), self.secret, None, target, self.sandbox_work,
                                 spec=spec)
            tables = [rows(1, 200), rows(201, 200)]
            dataset = boxed.dataset("sandboxed")
            info, _, _ = boxed.commit_run(dataset, tables)
            if info.no_op:
                raise Failed("the first commit of a run id in the sandbox returned no_op=True")
            out.reason = "sandboxed: " + boxed.same_rows(dataset.name, pa.concat_tables(tables), "sandboxed")


__all__ = ["AGAINST", "CHECKS", "parse_options", "run_kit"]
