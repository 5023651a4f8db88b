"""Connection strings, password redaction and the translation of driver errors into Dativo errors.

Every message that mentions a DSN or quotes a driver error goes through :func:`redact` first, so a password
never reaches a log line, a report or an exception.
"""

from __future__ import annotations

import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dativo.errors import ConfigError, ConnectionFailed, DativoError, PluginFailed

_URI_PASSWORD = re.compile(r"(?P<pre>^[a-z]+://[^:/?#@]*:)[^@]*(?=@)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&]password=)[^&#\s]*", re.IGNORECASE)
# key=value form; not after ? or &, where the URI rule has already masked it.
_KV_PASSWORD = re.compile(r"(?P<pre>(?<![?&\w])password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_MASK = "***"

# Session settings that make the text form of values (ranges, money, timetz …) the same on every run,
# whatever the server's or role's defaults are. Applied with SET LOCAL semantics inside each read.
SESSION_SETTINGS: dict[str, str] = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "lc_monetary": "C",
}


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with every password replaced by ``***``.

    Handles URIs (``postgresql://user:secret@host/db``, ``?password=secret``) and key=value strings
    (``password=secret``, ``password='a b'``).
    """
    text = _URI_PASSWORD.sub(rf"\g<pre>{_MASK}", dsn)
    text = _QUERY_PASSWORD.sub(rf"\g<pre>{_MASK}", text)
    return _KV_PASSWORD.sub(rf"\g<pre>{_MASK}", text)


def _password(dsn: str) -> str | None:
    try:
        return conninfo_to_dict(dsn).get("password")  # type: ignore[return-value]
    except Exception:
        return None


def redact(text: str, dsn: str) -> str:
    """Redact ``text`` (a message that may quote ``dsn`` or its password) for display."""
    text = redact_dsn(text)
    password = _password(dsn)
    # Very short passwords would mangle unrelated words; libpq never echoes passwords anyway.
    if password and len(password) >= 3:
        text = text.replace(password, _MASK)
    return text


def one_paragraph(text: str) -> str:
    """Collapse a multi-line driver message into one line."""
    return " ".join(text.split())


def conninfo(dsn: str, connect_timeout: int) -> str:
    """Build the key=value connection string both drivers use, adding defaults the DSN does not set.

    Raises:
        ConfigError: If the DSN cannot be parsed (the message is redacted).
    """
    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:
        raise ConfigError(
            f"source.connection.dsn is not a valid libpq connection string ({redact_dsn(dsn)}): "
            f"{redact(one_paragraph(str(exc)), dsn)}",
            hint="Use a URI like postgresql://user:pass@host:5432/db or key=value pairs like "
            "'host=... dbname=... user=...'.",
        ) from None
    params.setdefault("connect_timeout", str(connect_timeout))
    params.setdefault("application_name", "dativo")
    params.setdefault("client_encoding", "UTF8")
    return make_conninfo("", **params)


def _connection_hint(detail: str) -> str:
    lowered = detail.lower()
    if "password" in lowered or "authentication" in lowered:
        return "Check the user name and password in source.connection.dsn (or PGPASSWORD / ~/.pgpass)."
    if "database" in lowered and "does not exist" in lowered:
        return "Create the database, or fix the database name in source.connection.dsn."
    if "role" in lowered and "does not exist" in lowered:
        return "Create the role, or fix the user name in source.connection.dsn."
    if "ssl" in lowered:
        return "Check sslmode and the certificates in source.connection.dsn."
    return (
        "Check that the server is running and reachable at the host and port (or Unix socket directory) "
        "in source.connection.dsn, and that no firewall blocks it."
    )


def connection_failed(exc: BaseException, dsn: str) -> ConnectionFailed:
    """Turn a driver's connection error into a :class:`ConnectionFailed` without secrets."""
    detail = redact(one_paragraph(str(exc)), dsn)
    return ConnectionFailed(
        f"Cannot connect to PostgreSQL at {redact_dsn(dsn)}: {detail}",
        hint=_connection_hint(detail),
    )


_GUARD = re.compile(r'"dativo: (?P<what>[^\n]*)"')


def read_failed(exc: BaseException, dataset: str, dsn: str) -> DativoError:
    """Turn a driver error raised while reading ``dataset`` into a :class:`PluginFailed` (a
    :class:`ConnectionFailed` when the server ended the connection).

    Errors raised on purpose by the value guards of the SELECT (see ``sql.py``) carry a ``dativo:`` marker
    that names the column; they become a message about that column instead of a cast error.
    """
    detail = redact(one_paragraph(str(exc)), dsn)
    guard = _GUARD.search(str(exc))
    if guard:
        return PluginFailed(
            f"Reading {dataset} failed: {redact(guard.group('what'), dsn)}",
            role="reader",
            stage="read",
            hint="Read the table through a 'query:' that filters or converts such values "
            "(for example col::text, or LEAST(col, '9999-12-31') for infinite timestamps).",
        )
    lowered = detail.lower()
    for markers, kind, what, hint in _READ_ENDED:
        if any(marker in lowered for marker in markers):
            message = f"Reading {dataset} failed: {f'{what} ({detail})' if what else detail}"
            return kind(message, hint=hint).with_context(role="reader", stage="read")
    return PluginFailed(f"Reading {dataset} failed: {detail}", role="reader", stage="read")


_READ_ENDED: tuple[tuple[tuple[str, ...], type[DativoError], str, str], ...] = (
    (("terminating connection", "server closed the connection", "connection to server was lost",
      "could not receive data from server", "ssl syscall error", "the database system is shutting down",
      "the database system is in recovery mode", "consuming input failed"),
     ConnectionFailed, "the server ended the connection mid-read",
     "The server restarted or shut down, or an administrator, a proxy or a timeout ended the session. Nothing "
     "was published: rerun the job once the server is back."),
    (("conflict with recovery",), ConnectionFailed, "the replica cancelled the read",
     "A standby cancels long reads that hold back its replay: set hot_standby_feedback = on or raise "
     "max_standby_streaming_delay on the replica, or read from the primary. Nothing was published."),
    (("statement timeout",), PluginFailed, "",
     "The server's statement_timeout ended the read: raise it for the job's role (ALTER ROLE … SET "
     "statement_timeout = 0), or give the source more parallelism so that each split is shorter. Nothing was "
     "published."),
)
"""How a read the server ended is told: its markers in the driver's message, the error, what, and the advice."""
