"""The checks every plugin gets, reader or writer:

=========================  ======================================================================================
``options-schema``         ``Config`` publishes a JSON Schema (an object schema that ``json.dumps`` accepts)
``options-enforced``       an unknown option is refused with ``ConfigError`` (``extra="forbid"``)
``check``                  ``check()`` passes on the real configuration
``check-broken-config``    with a connection to a closed port, fake credentials and paths that cannot exist,
                           ``check()`` (or, for a reader that checks nothing, ``discover()``) fails with a
                           ``DativoError``; skipped when the configuration has nothing the kit can break
``secrets``                the fake secret planted by ``check-broken-config`` appears in no error the plugin
                           raised and in no log record (read as the plugin wrote it, before any redaction)
=========================  ======================================================================================
"""

from __future__ import annotations

import json
from typing import Any

from dativo.errors import ConfigError, DativoError
from dativo.kit.checks import Checklist, Failed, Skipped
from dativo.kit.subject import Session, Subject, broken
from dativo.secrets import encodings

UNKNOWN_OPTION = "dativo_kit_unknown_option"
"""The option the kit adds to see it refused."""


class PluginChecks:
    """What the reader and writer checks share.

    Args:
        session: The kit's session.
        subject: The plugin under test (loaded).
        checks: Where outcomes go.
        secret: The fake secret to plant.
        instance: The main instance (the ``load`` check made it).
        settings: The connector keys instances are made with (a writer's: aimed at the temporary target).
        options: The options instances are made with.
    """

    def __init__(self, session: Session, subject: Subject, checks: Checklist, secret: str, instance: Any,
                 settings: dict[str, Any], options: dict[str, Any]) -> None:
        self.session = session
        self.subject = subject
        self.checks = checks
        self.secret = secret
        self.main = instance
        self.settings = settings
        self.options = options
        self.messages: list[tuple[str, str]] = []
        """``(where, text)`` of every error the plugin raised, for the secrets check."""
        self.planted: list[str] = []

    def _error(self, where: str, exc: BaseException) -> None:
        self.messages.append((where, str(exc)))

    def instance(self, **kw: Any) -> Any:
        """A new instance with this side's settings and options (``kw`` overrides them)."""
        kw.setdefault("settings", self.settings)
        kw.setdefault("options", self.options)
        return self.session.instance(self.subject, **kw)

    def options_schema(self) -> None:
        with self.checks.check("options-schema") as out:
            assert self.subject.spec is not None
            schema = self.subject.spec.cls.Config.model_json_schema()
            if not isinstance(schema, dict) or schema.get("type", "object") != "object":
                raise Failed(f"Config.model_json_schema() is {type(schema).__name__}, not an object schema")
            json.dumps(schema)
            names = sorted(schema.get("properties") or {})
            listed = f": {', '.join(names[:8])}{'…' if len(names) > 8 else ''}" if names else ""
            out.reason = f"{len(names)} option(s) published{listed}"
            out.details["schema"] = schema

    def options_enforced(self) -> None:
        with self.checks.check("options-enforced") as out:
            try:
                instance = self.instance(options={**self.options, UNKNOWN_OPTION: 1})
            except ConfigError:
                out.reason = f"the unknown option '{UNKNOWN_OPTION}' is refused with ConfigError"
                return
            except DativoError as exc:
                raise Failed(f"the unknown option '{UNKNOWN_OPTION}' was refused with {type(exc).__name__}, "
                             f"not ConfigError: {exc}") from None
            self.session.close(instance)
            origin = self.subject.spec.origin if self.subject.spec is not None else ""
            fix = {"native": "return DATIVO_STATUS_INVALID_ARGUMENT from *_new for a key it does not know",
                   "process": "raise ConfigError (or its wire kind) from configure for a key it does not know",
                   "flight": "raise ConfigError (or its wire kind) from configure for a key it does not know",
                   "sandbox": "declare its Config with model_config = ConfigDict(extra='forbid')"}.get(
                origin, "declare Config with model_config = ConfigDict(extra='forbid')")
            raise Failed(f"the unknown option '{UNKNOWN_OPTION}' was accepted, so a misspelled option is silently "
                         f"ignored; {fix}")

    def check(self) -> None:
        with self.checks.check("check") as out:
            try:
                self.main.check()
            except Exception as exc:
                self._error("check()", exc)
                raise
            out.reason = "check() passed on the real configuration"

    def broken_config(self) -> None:
        with self.checks.check("check-broken-config") as out:
            assert self.subject.spec is not None
            blocker = self.session.folder("broken") / "a-file"
            blocker.write_text("the kit's broken configuration points below this file\n")
            breakage = broken(self.subject.spec, self.settings, self.options, self.secret, blocker)
            self.planted = breakage.planted
            if not breakage.changes:
                raise Skipped("the kit cannot break this configuration: it has no connection, credential or path")
            what = "; ".join(breakage.changes[:4])
            instance = None
            stage = "configure"
            try:
                instance = self.instance(settings=breakage.settings, options=breakage.options)
                stage = "check()"
                instance.check()
                if self.subject.role == "reader":
                    stage = "discover()"
                    instance.discover()
            except DativoError as exc:
                self._error(stage, exc)
                out.reason = f"{stage} refused it with {type(exc).__name__} ({what})"
                return
            except Exception as exc:
                self._error(stage, exc)
                raise Failed(f"{stage} of a broken configuration ({what}) raised a bare {type(exc).__name__}, "
                             f"not a DativoError: {exc}") from None
            finally:
                if instance is not None:
                    self.session.close(instance)
            checked = "check() and discover()" if self.subject.role == "reader" else "check()"
            raise Failed(f"{checked} accepted a broken configuration ({what})")

    def secrets(self) -> None:
        with self.checks.check("secrets") as out:
            if not self.planted:
                raise Skipped("no credential or connection option to plant a fake secret in")
            forms = encodings(self.secret)
            texts = [(f"the error of {where}", text) for where, text in self.messages]
            texts += [(f"a log record of {r.logger}", r.message) for r in self.session.logs]
            for where, text in texts:
                if any(form in text for form in forms):
                    raise Failed(f"the fake secret planted in {', '.join(self.planted)} appears in {where}")
            out.reason = (f"a fake secret in {', '.join(self.planted)}: in none of {len(self.messages)} error(s) "
                          f"and {len(self.session.logs)} log record(s)")


__all__ = ["UNKNOWN_OPTION", "PluginChecks"]
