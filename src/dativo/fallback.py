"""When a built-in may replace a failed custom plugin, and what a failed job's hint says about falling back.

A fallback is only safe when the built-in is a drop-in: it must read the datasets the custom reader read,
with the same columns, or its rows land in other tables or in another shape. And the advice a plugin's
error carries ("set fallback: default …") must fit the job: it is wrong where fallback is already on, or
where the connector has no built-in at all.
"""

from __future__ import annotations

from dativo.api import Dataset
from dativo.config import JobConfig
from dativo.errors import DativoError, PluginFailed, fallback_hint
from dativo.registry import has_builtin


def same_datasets(custom: list[Dataset] | None, builtin: list[Dataset], reader: str, *, job: str) -> None:
    """Check that the built-in reader ``reader`` feeds the tables the failed custom reader fed.

    Args:
        custom: What the custom reader discovered (``None``: it failed before it said).
        builtin: What the built-in discovered.
        reader: The built-in's name, for the message.
        job: The job's name, for the message.

    Raises:
        PluginFailed: The datasets (or their columns) differ: falling back would publish the rows into other
            tables, or in another shape.
    """
    if custom is None:
        return
    theirs = {d.name: d for d in custom}
    ours = {d.name: d for d in builtin}
    problem = ""
    if theirs.keys() != ours.keys():
        problem = (f"it reads dataset(s) {', '.join(sorted(ours))} where the custom reader read "
                   f"{', '.join(sorted(theirs))}, so the rows would go to other tables")
    else:
        for name, dataset in ours.items():
            a, b = dataset.schema, theirs[name].schema
            if a is not None and b is not None and a.names != b.names:
                problem = (f"its dataset '{name}' has columns {', '.join(a.names)} where the custom reader's "
                           f"has {', '.join(b.names)}")
                break
    if problem:
        raise PluginFailed(
            f"not falling back to the built-in reader {reader}: {problem}",
            role="reader", stage="fallback", plugin=reader, job=job,
            hint="Fix the custom reader (its own error is in the run's warnings), or set "
            "source.reader.fallback: fail; name the target table (target.table) if both should write it.",
        )


def situated(exc: DativoError, job: JobConfig) -> DativoError:
    """``exc`` with the generic "set fallback: default" advice replaced by what fits ``job``."""
    role = getattr(exc, "role", "")
    if role not in ("reader", "writer"):
        return exc
    generic = fallback_hint(role)
    if not exc.hint or generic not in exc.hint:
        return exc
    section, conf = ("source", job.source) if role == "reader" else ("target", job.target)
    impl = job.source.reader if role == "reader" else job.target.writer
    if impl.type == "default":
        advice = ""  # the built-in itself failed: there is nothing to fall back to
    elif not has_builtin(role, conf.type):
        advice = (f"Fix the plugin; '{conf.type}' has no built-in {role} to fall back to "
                  f"({section}.{role}.fallback cannot help).")
    elif impl.fallback == "fail":
        advice = generic
    else:
        advice = "Fix the plugin; the built-in fallback did not help (see the run's warnings)."
    return exc.with_hint(" ".join(exc.hint.replace(generic, advice).split()) or None)
