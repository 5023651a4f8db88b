"""Catalog and FileIO construction: the embedded SQL catalog, a SQL database, or a REST catalog.

Catalogs are built directly (:class:`~dativo.writers.iceberg.sqlite.SqliteCatalog` for a SQLite file,
``SqlCatalog`` for another database, ``RestCatalog``), never through ``load_catalog``, so a developer's
``~/.pyiceberg.yaml`` or ``PYICEBERG_*`` variables cannot change what a job writes to.
Data and metadata always go through pyiceberg's pyarrow FileIO (local files and S3 alike).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse, urlunparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import ForbiddenError, OAuthError, UnauthorizedError
from pyiceberg.io.pyarrow import PyArrowFileIO

from dativo.errors import ConnectionFailed
from dativo.storage.s3 import S3Settings, redact
from dativo.writers.iceberg.sqlite import SqliteCatalog, sqlite_file, sqlite_path

_SECRET_KEY = re.compile(r"secret|token|key|credential|password", re.IGNORECASE)

CATALOG_NAME = "dativo"
"""Default catalog name: the SQL catalog keys its rows by it, so it must not change between runs."""


_REST_ONLY = ("token", "credential", "oauth2_server_uri", "scope", "sigv4", "signing_region", "signing_name")


class CatalogConfig(BaseModel):
    """Where the Iceberg catalog is and where table data goes."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sql", "rest"] = Field(default="sql", description="Catalog implementation.")
    uri: str | None = Field(
        default=None,
        description="The SQL catalog's database: 'sqlite:///path' (kept with Python's sqlite3, the "
        "default <work_dir>/catalog.db) or any other SQLAlchemy URL (e.g. 'postgresql+psycopg://...'; "
        "'sqlite+pysqlite:///path' for SQLAlchemy on a SQLite file); or the REST catalog's base URL.",
    )
    warehouse: str | None = Field(
        default=None,
        description="Where new tables are stored: 'file:///abs/path', a local path, or 's3://bucket/prefix'. "
        "For REST catalogs, the warehouse name or location the server expects. SQL defaults to "
        "<work_dir>/warehouse.",
    )
    name: str = Field(
        default=CATALOG_NAME,
        description="Catalog name. The SQL catalog keys its rows by it: jobs share tables only when they use "
        "the same name, so keep it stable across runs. REST catalogs only show it in messages.",
    )
    s3: S3Settings | None = Field(default=None, description="S3-compatible storage of the warehouse.")
    token: SecretStr | None = Field(default=None, description="REST catalog bearer token.")
    credential: SecretStr | None = Field(
        default=None,
        description="REST catalog OAuth2 client credential 'client_id:client_secret', exchanged for a token "
        "at oauth2_server_uri.",
    )
    oauth2_server_uri: str | None = Field(
        default=None,
        description="REST catalog: the OAuth2 token endpoint for credential (Polaris: "
        "'<uri>/v1/oauth/tokens'; Lakekeeper and Nessie: their identity provider's token URL). Unset: the "
        "catalog's own '<uri>/v1/oauth/tokens', a fallback Iceberg deprecates.",
    )
    scope: str | None = Field(
        default=None,
        description="REST catalog: the OAuth2 scope asked for with credential (pyiceberg's default "
        "'catalog'; Polaris: 'PRINCIPAL_ROLE:ALL').",
    )
    sigv4: bool = Field(
        default=False,
        description="REST catalog: sign every request with AWS Signature V4 (AWS Glue, Amazon S3 Tables, "
        "SeaweedFS), with the s3 block's keys, or the AWS default credential chain when it has none.",
    )
    signing_region: str | None = Field(
        default=None, description="SigV4 region; defaults to s3.region, else the AWS default region."
    )
    signing_name: str | None = Field(
        default=None,
        description="SigV4 service name: 'glue' for AWS Glue, 's3tables' for Amazon S3 Tables, 's3' for "
        "SeaweedFS; pyiceberg's default is 'execute-api'.",
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Extra pyiceberg catalog properties, passed as they are (values are never logged).",
    )

    @model_validator(mode="after")
    def _rest_settings_need_rest(self) -> CatalogConfig:
        if self.type != "rest":
            named = [key for key in _REST_ONLY if getattr(self, key) not in (None, False)]
            if named:
                raise ValueError(f"{', '.join(named)}: only for a REST catalog (type: rest)")
        return self


@dataclass
class CatalogHandle:
    """A connected catalog, the properties it was built from and what is safe to say about it."""

    catalog: Catalog
    properties: dict[str, str]
    warehouse: str | None
    """Where new tables go, probed for write access; ``None`` when the server decides (REST)."""
    description: str
    secrets: list[str] = field(default_factory=list)
    refusal_hint: str = "Check the credentials in target.catalog"
    """What to check when the catalog refuses the credentials (the settings this catalog signs in with)."""

    def io(self) -> PyArrowFileIO:
        """A FileIO with the catalog's storage settings (for paths outside any table)."""
        return PyArrowFileIO(properties=self.properties)

    def redact(self, text: str) -> str:
        """Scrub every secret of this catalog from ``text``."""
        return redact(text, self.secrets)

    def error(self, failure: str, exc: BaseException) -> ConnectionFailed:
        """:func:`catalog_error` for this catalog."""
        return catalog_error(self.description, failure, exc, self.secrets, self.refusal_hint)


def _local_warehouse(path: str) -> str:
    return Path(path).expanduser().absolute().as_uri()


def normalise_warehouse(warehouse: str) -> str:
    """Local paths become absolute ``file://`` URIs; other URIs are kept."""
    parsed = urlparse(warehouse)
    if parsed.scheme == "file":
        return _local_warehouse(parsed.path)
    if not parsed.scheme or len(parsed.scheme) == 1:  # no scheme, or a Windows drive letter
        return _local_warehouse(warehouse)
    return warehouse.rstrip("/")


def _safe_uri(uri: str) -> str:
    """The URI without a password in its user-info part."""
    parsed = urlparse(uri)
    if parsed.password:
        host = parsed.hostname or ""  # a Unix-socket URI names its host in the query instead
        netloc = f"{parsed.username}:***@{host}" + (f":{parsed.port}" if parsed.port else "")
        return urlunparse(parsed._replace(netloc=netloc))
    return uri


def fileio_properties(s3: S3Settings | None) -> dict[str, str]:
    """pyiceberg FileIO properties for ``s3`` (always the pyarrow FileIO)."""
    props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    if s3 is None:
        return props
    props["s3.region"] = s3.region
    if s3.endpoint_url:
        props["s3.endpoint"] = s3.endpoint_url
    if s3.access_key_id is not None:
        props["s3.access-key-id"] = s3.access_key_id.get_secret_value()
    if s3.secret_access_key is not None:
        props["s3.secret-access-key"] = s3.secret_access_key.get_secret_value()
    if s3.session_token is not None:
        props["s3.session-token"] = s3.session_token.get_secret_value()
    if s3.path_style:
        props["s3.force-virtual-addressing"] = "false"
    if s3.connect_timeout is not None:
        props["s3.connect-timeout"] = str(s3.connect_timeout)
    if s3.request_timeout is not None:
        props["s3.request-timeout"] = str(s3.request_timeout)
    return props


def open_catalog(config: CatalogConfig | None, work_dir: str) -> CatalogHandle:
    """Connect to the configured catalog, or the embedded one under ``work_dir``.

    Raises:
        ConnectionFailed: If the catalog cannot be reached or initialised; the message names the catalog
            and never contains a credential.
    """
    config = config or CatalogConfig()
    base = Path(work_dir).expanduser().absolute()
    secrets = [s.get_secret_value() for s in (config.token, config.credential) if s]
    secrets += [v for k, v in config.properties.items() if _SECRET_KEY.search(k)]
    if config.s3:
        secrets += config.s3.secrets()
    if config.uri and urlparse(config.uri).password:
        secrets.append(urlparse(config.uri).password or "")
    props = dict(config.properties)
    props.update(fileio_properties(config.s3))

    if config.type == "sql":
        uri = config.uri or f"sqlite:///{base / 'catalog.db'}"
        warehouse = normalise_warehouse(config.warehouse or str(base / "warehouse"))
        storage = f" on {config.s3.describe()}" if config.s3 and warehouse.startswith("s3") else ""
        description = f"SQL catalog '{config.name}' at {_safe_uri(uri)} (warehouse {warehouse}{storage})"
        sqlite = sqlite_path(uri)
        if sqlite is not None and sqlite.exists() and not sqlite.is_file():
            # /dev/null would swallow every commit, a FIFO would block the run: only a file keeps a catalog
            raise ConnectionFailed(
                f"{description}: {sqlite} is not a regular file",
                hint="Point target.catalog.uri at a file (it is created if missing)",
            )
        try:
            if sqlite is not None:
                sqlite.parent.mkdir(parents=True, exist_ok=True)
            if warehouse.startswith("file://"):
                Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectionFailed(
                f"{description}: cannot create its directory: {exc.strerror or exc}",
                hint="Point target.catalog at a writable location",
            ) from None
        props.update(uri=uri, warehouse=warehouse)
        if sqlite_file(uri) is not None:  # the same rows as SqlCatalog's, without importing SQLAlchemy
            factory: Callable[[], Catalog] = lambda: SqliteCatalog(config.name, **props)  # noqa: E731
        else:
            from pyiceberg.catalog.sql import SqlCatalog

            factory = lambda: SqlCatalog(config.name, **props)  # noqa: E731
    else:
        if not config.uri:
            raise ConnectionFailed("REST catalog: target.catalog.uri is required")
        props.update(rest_properties(config))
        warehouse = None  # the server places each table (an S3 table bucket refuses writes outside them)
        storage = f", storage on {config.s3.describe()}" if config.s3 else ""
        signed = ", SigV4-signed" if config.sigv4 else ""
        description = f"REST catalog '{config.name}' at {_safe_uri(config.uri)}{signed}{storage}"
        if config.sigv4 and importlib.util.find_spec("boto3") is None:
            raise ConnectionFailed(
                f"{description}: SigV4 signing (target.catalog.sigv4) needs boto3, which is not installed",
                hint="pip install 'dativo[iceberg]' (or 'pyiceberg[rest-sigv4]')",
            )
        from dativo.writers.iceberg.rest import SignedRestCatalog

        factory = lambda: SignedRestCatalog(config.name, **props)  # noqa: E731

    refusal = _refusal_hint(config)
    try:
        catalog = _opened(factory)
    except Exception as exc:  # any driver error means the catalog cannot be reached
        raise catalog_error(description, "cannot open the catalog", exc, secrets, refusal) from None
    return CatalogHandle(catalog, props, warehouse, description, secrets, refusal)


def _refusal_hint(config: CatalogConfig) -> str:
    if config.type == "sql":
        return "Check the user and password in target.catalog.uri"
    if config.sigv4:
        return (
            "Check the SigV4 keys (target.catalog.s3, else the AWS default credential chain), "
            "signing_region and signing_name"
        )
    if config.credential:
        return "Check target.catalog.credential, oauth2_server_uri and scope"
    if config.token:
        return "Check target.catalog.token (it may have expired)"
    return "The catalog wants credentials: set target.catalog.token, credential or sigv4"


def rest_properties(config: CatalogConfig) -> dict[str, str]:
    """pyiceberg ``RestCatalog`` properties of ``config``; ``config.properties`` win over derived ones."""
    props = {"uri": config.uri or ""}
    if config.warehouse:
        warehouse = config.warehouse
        props["warehouse"] = normalise_warehouse(warehouse) if "://" in warehouse else warehouse
    if config.token:
        props["token"] = config.token.get_secret_value()
    if config.credential:
        props["credential"] = config.credential.get_secret_value()
    if config.oauth2_server_uri:
        props["oauth2-server-uri"] = config.oauth2_server_uri
    if config.scope:
        props["scope"] = config.scope
    if config.sigv4:
        props["rest.sigv4-enabled"] = "true"
        region = config.signing_region or (config.s3.region if config.s3 else None)
        if region:
            props["rest.signing-region"] = region
        if config.signing_name:
            props["rest.signing-name"] = config.signing_name
        s3 = config.s3
        for key, secret in (
            ("client.access-key-id", s3.access_key_id if s3 else None),
            ("client.secret-access-key", s3.secret_access_key if s3 else None),
            ("client.session-token", s3.session_token if s3 else None),
        ):
            if secret is not None:
                props[key] = secret.get_secret_value()
    props.update({k: v for k, v in config.properties.items() if k in props})
    return props


def catalog_error(
    description: str, failure: str, exc: BaseException, secrets: list[str], refusal_hint: str
) -> ConnectionFailed:
    """The :class:`ConnectionFailed` for a catalog that refused the credentials or failed with ``exc``.

    The message names the catalog (``description``), says what failed (``failure``, or that the catalog
    refused the credentials, then hints with ``refusal_hint``) and ends with the driver's first line,
    every secret scrubbed.
    """
    text = redact(first_line(exc), secrets)
    if refused_credentials(exc):
        message = f"{description}: the catalog refused the credentials: {text}"
        return ConnectionFailed(message, hint=refusal_hint)
    if unreachable(exc):
        reason = _OS_REASON.findall(str(exc))
        return ConnectionFailed(
            f"{description}: cannot reach the catalog: {redact(reason[-1] if reason else text, secrets)}",
            hint="Check target.catalog.uri, and that the catalog is running and reachable from here",
        )
    return ConnectionFailed(
        f"{description}: {failure}: {text}", hint="Check target.catalog (uri, credentials, file permissions)"
    )


_OS_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is the HTTP client failing to connect (refused, unknown host, timed out)."""
    requests = sys.modules.get("requests")  # only a REST catalog loads it
    return requests is not None and isinstance(
        exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    )


def refused_credentials(exc: BaseException) -> bool:
    """Whether ``exc`` is a REST catalog refusing the credentials (HTTP 401 or 403, or an OAuth2 error)."""
    return isinstance(exc, (ForbiddenError, OAuthError, UnauthorizedError))


_OPEN_ATTEMPTS = 3


def _opened(factory: Callable[[], Catalog]) -> Catalog:
    """``factory()``, again when it lost a race to create the catalog's own tables.

    Jobs that open a new SQL catalog at the same moment each create its tables; all but one then meet a
    duplicate table or type (an integrity or programming error of the database). The tables exist by then,
    so opening again succeeds.
    """
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return factory()
        except Exception as exc:
            if attempt + 1 == _OPEN_ATTEMPTS or not (isinstance(exc, _database_races()) or _lost_sqlite_race(exc)):
                raise
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _lost_sqlite_race(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's way of saying another job created the catalog's tables first.

    SQLite reports a duplicate ``CREATE TABLE`` (and a writer holding the file) as an operational error,
    the same class as an unreadable file, so the message tells them apart.
    """
    errors = sys.modules.get("sqlalchemy.exc")  # loaded by SqlCatalog; SqliteCatalog creates IF NOT EXISTS
    if errors is None:
        return False
    text = str(exc)
    return isinstance(exc, errors.OperationalError) and ("already exists" in text or "database is locked" in text)


def _database_races() -> tuple[type[BaseException], ...]:
    """The errors a SQL catalog's database raises when two jobs create the same thing at once."""
    errors = sys.modules.get("sqlalchemy.exc")  # loaded by SqlCatalog, the only catalog whose opening races
    if errors is None:
        return ()
    return (errors.IntegrityError, errors.ProgrammingError)


def ensure_namespace(catalog: Catalog, namespace: tuple[str, ...]) -> None:
    """Create ``namespace`` unless it exists, also when another job creates it at the same moment."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    except _database_races():  # the other job's insert won between the check and ours
        catalog.load_namespace_properties(namespace)  # it exists now, or this raises what is wrong


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 500 characters."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def probe_warehouse(handle: CatalogHandle) -> None:
    """Write and delete a small file in the warehouse to prove it is writable.

    Raises:
        ConnectionFailed: If the write or the delete fails.
    """
    warehouse = handle.warehouse
    if not warehouse or "://" not in warehouse:
        return  # a REST catalog: the server decides where data goes
    path = f"{warehouse.rstrip('/')}/.dativo-probe-{os.getpid()}-{uuid.uuid4().hex}"
    io = handle.io()
    try:
        with io.new_output(path).create(overwrite=True) as stream:
            stream.write(b"dativo")
        io.delete(path)
    except Exception as exc:  # whatever failed, the warehouse is not usable
        raise ConnectionFailed(
            f"{handle.description}: the warehouse is not writable: {handle.redact(first_line(exc))}",
            hint="Check the warehouse path or bucket, and the storage credentials",
        ) from None


__all__ = [
    "CATALOG_NAME",
    "CatalogConfig",
    "CatalogHandle",
    "catalog_error",
    "fileio_properties",
    "first_line",
    "normalise_warehouse",
    "open_catalog",
    "probe_warehouse",
    "refused_credentials",
    "rest_properties",
    "unreachable",
]
