"""Options a plugin in another language declares as JSON Schema, checked by the host like a Python ``Config``.

A Go (Flight) plugin publishes the JSON Schema of its options in its ``spec``; a native library may export
``plugin_config_schema``. :func:`declared` turns that schema into a pydantic model, so the job's options are
checked before the plugin starts, with the messages a Python plugin's ``Config`` gives (the YAML path and
line, "did you mean" for an unknown key, the key of a value of the wrong type):
:meth:`dativo.registry.PluginSpec.build_config` validates it like any ``Config``.

The subset checked is what plugins use: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``enum``, ``const``, ``minimum``/``maximum`` (and their exclusive forms),
``items``, ``anyOf``/``oneOf`` and local ``$ref``; ``default`` and ``description`` are documentation. Any
other keyword is not checked here (the plugin still checks what it receives), so the host is not stricter
than the schema, but for one thing: an ``integer`` is written without a decimal point (``5``, not ``5.0``),
as Go and C++ plugins decode it. The values are checked as JSON types, never converted (a YAML date is a
string: it reaches the plugin as one); the plugin receives the options as the job wrote them
(``model_dump(by_alias=True, exclude_unset=True)``), with no defaults filled in.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PlainValidator, Tag
from pydantic_core import PydanticKnownError

_MAX_DEPTH = 32
_JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
_TEXT_LIKE = (date, datetime, time)  # YAML timestamps: they travel to the plugin as strings


class PluginOptions(BaseModel):
    """Options a plugin validates itself: anything, unless a subclass made by :func:`declared` says more.

    ``model_json_schema()`` is the schema the plugin published (``dativo plugins info`` shows it).
    """

    model_config = ConfigDict(extra="allow")

    plugin_schema: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The plugin's own schema when it published one."""
        if cls.plugin_schema is not None:
            return cls.plugin_schema
        return super().model_json_schema(*args, **kwargs)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def declared(
    base: type[PluginOptions], schema: Any, *, check: bool = True, name: str = "Options"
) -> type[PluginOptions]:
    """A subclass of ``base`` that publishes ``schema`` and, with ``check``, validates options against it.

    Args:
        base: The options class of the kind of plugin (remote, native).
        schema: The JSON Schema the plugin published (``None``: it published none).
        check: Validate what the schema declares; without it the subclass only publishes the schema (a
            Python plugin validates its own options with its pydantic ``Config``, which accepts more than
            the JSON Schema it publishes says, e.g. ``"5"`` for an ``int``).
        name: The class name.
    """
    namespace: dict[str, Any] = {
        "plugin_schema": schema if isinstance(schema, dict) else None,
        "__module__": base.__module__,
        "__doc__": base.__doc__,
    }
    if check and isinstance(schema, dict) and _is_object(schema):
        _fields(schema, schema, namespace, base)
    return type(name, (base,), namespace)


def _is_object(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (kind is None and ("properties" in node or "additionalProperties" in node))


def _fields(
    node: Mapping[str, Any],
    root: Mapping[str, Any],
    namespace: dict[str, Any],
    base: type,
    depth: int = 0,
    seen: frozenset[str] = frozenset(),
) -> None:
    """Fill a model's ``namespace`` with the fields of an object schema."""
    properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    required = set(node.get("required") or []) if isinstance(node.get("required"), list) else set()
    annotations: dict[str, Any] = {}
    for index, (key, child) in enumerate(properties.items()):
        annotation = _annotation(child, root, depth + 1, seen)
        default = ... if key in required else (child.get("default") if isinstance(child, dict) else None)
        attribute = key
        if not (key.isidentifier() and not keyword.iskeyword(key) and not key.startswith(("_", "model_"))
                and not hasattr(base, key)):
            attribute = f"field_{index}"
            while attribute in properties:
                attribute += "_"
        annotations[attribute] = annotation
        namespace[attribute] = Field(default, alias=key) if attribute != key else Field(default)
    namespace["__annotations__"] = annotations
    if _extra(node) is False:
        namespace["model_config"] = ConfigDict(extra="forbid")


def _extra(node: Mapping[str, Any]) -> Any:
    """An object's ``additionalProperties`` (``None``, anything, next to ``patternProperties``)."""
    return None if node.get("patternProperties") else node.get("additionalProperties")


def _annotation(node: Any, root: Mapping[str, Any], depth: int, seen: frozenset[str] = frozenset()) -> Any:
    """The type of a value that ``node`` describes (``Any`` for what this module does not check)."""
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return Any
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        return Any if target is None or ref in seen else _annotation(target, root, depth + 1, seen | {ref})
    if isinstance(node.get("enum"), list) and node["enum"]:
        return _checked(_one_of(node["enum"]))
    if "const" in node:
        return _checked(_one_of([node["const"]]))
    for combinator in ("anyOf", "oneOf"):
        if isinstance(node.get(combinator), list) and node[combinator]:
            members = [_annotation(m, root, depth + 1, seen) for m in node[combinator]]
            return Any if Any in members else Union[tuple(members)]  # noqa: UP007 - built at run time
    kinds = node.get("type")
    if kinds is None and _is_object(node):
        kinds = "object"
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or not all(k in _JSON_TYPES for k in kinds):
        return Any
    members = {kind: _typed(kind, node, root, depth, seen) for kind in dict.fromkeys(kinds)}
    if len(members) == 1:
        return next(iter(members.values()))
    tagged = [Annotated[member, Tag(f"form:{kind}")] for kind, member in members.items()]
    tagged.append(Annotated[_checked(_none_of(list(members))), Tag("form:other")])
    return Annotated[Union[tuple(tagged)], Discriminator(_json_type(tuple(members)))]  # noqa: UP007


def _typed(
    kind: str, node: Mapping[str, Any], root: Mapping[str, Any], depth: int, seen: frozenset[str]
) -> Any:
    """The type of one JSON type of ``node``."""
    if kind == "array":
        return list[_annotation(node.get("items"), root, depth + 1, seen)]  # type: ignore[misc]
    if kind == "object":
        properties = node.get("properties")
        extra = _extra(node)
        if not isinstance(properties, dict):
            if extra is False:
                properties = {}
            else:
                return dict[str, _annotation(extra, root, depth + 1, seen)]  # type: ignore[misc]
        namespace: dict[str, Any] = {"__module__": __name__}
        base = _Closed if extra is False else _Open
        _fields({**node, "properties": properties}, root, namespace, base, depth, seen)
        return type("Object", (base,), namespace)
    if kind in ("integer", "number"):
        return _checked(_number(kind == "integer", node))
    return _checked({"null": _null, "boolean": _boolean, "string": _string}[kind])


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    """The node a local ``$ref`` (``#/$defs/Column``) points at, or ``None``."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# --- the checks of single values (never converting them) ----------------------------------------------------


def _checked(check: Callable[[Any], Any]) -> Any:
    """A type whose values ``check`` accepts (unchanged) or refuses (raising a pydantic error)."""
    return Annotated[Any, PlainValidator(check)]


def _json_type_of(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (str, *_TEXT_LIKE)):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _json_type(kinds: tuple[str, ...]) -> Callable[[Any], str]:
    """The tag of the member of a union of JSON types that checks ``value`` (``form:other``: none)."""

    def tag(value: Any) -> str:
        kind = _json_type_of(value)
        if kind == "integer" and kind not in kinds:
            kind = "number"  # an integer is a number too
        return f"form:{kind}" if kind in kinds else "form:other"

    return tag


def _none_of(kinds: list[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        raise ValueError(f"Input should be {_either([_NAMES[k] for k in kinds])}")  # a value_error

    return check


_NAMES = {"null": "null", "boolean": "true or false", "integer": "an integer", "number": "a number",
          "string": "a string", "array": "a list", "object": "a mapping"}


def _either(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _null(value: Any) -> Any:
    if value is not None:
        raise PydanticKnownError("none_required")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise PydanticKnownError("bool_type")
    return value


def _string(value: Any) -> Any:
    if _json_type_of(value) != "string":
        raise PydanticKnownError("string_type")
    return value


def _number(integer: bool, node: Mapping[str, Any]) -> Callable[[Any], Any]:
    bounds = [(key, node[key]) for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
              if isinstance(node.get(key), int | float) and not isinstance(node.get(key), bool)]

    def check(value: Any) -> Any:
        kind = _json_type_of(value)
        if kind != "integer" and (integer or kind != "number"):
            raise PydanticKnownError("int_type" if integer else "float_type")
        for key, limit in bounds:
            if key == "minimum" and value < limit:
                raise PydanticKnownError("greater_than_equal", {"ge": limit})
            if key == "maximum" and value > limit:
                raise PydanticKnownError("less_than_equal", {"le": limit})
            if key == "exclusiveMinimum" and value <= limit:
                raise PydanticKnownError("greater_than", {"gt": limit})
            if key == "exclusiveMaximum" and value >= limit:
                raise PydanticKnownError("less_than", {"lt": limit})
        return value

    return check


def _one_of(values: list[Any]) -> Callable[[Any], Any]:
    expected = _either([repr(v) for v in values])

    def check(value: Any) -> Any:
        for allowed in values:  # 1 is not true, and 1.0 is 1 (as in JSON Schema)
            if value == allowed and (isinstance(value, bool) == isinstance(allowed, bool)):
                return value
        raise PydanticKnownError("enum", {"expected": expected})

    return check


__all__ = ["PluginOptions", "declared"]
