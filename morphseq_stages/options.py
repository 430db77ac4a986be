"""A stage's options, declared once: the CLI flags are made from them and every call is
checked against them, from the command line or from Python.

A schema is an attrs class whose fields are made with :func:`option`::

    @attrs.frozen(kw_only=True)
    class MyOptions:
        root: Path = option(type=Path, help="pipeline root")          # no default: required
        batch_size: int = option(type=int, default=64, minimum=1, help="images per batch")
        device: str = option(type=str, default="auto", choices=("cpu", "cuda", "auto"), help="where to run")

    register(Stage(name="mine", help="...", options=MyOptions))

Types: ``bool`` (a flag), ``int``, ``float``, ``str``, ``Path`` and ``list`` (of text;
``nargs="+"`` on the command line; a bare string from Python is one element).
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import UserError

_KEY = "morphseq_option"
TYPES = (bool, int, float, str, Path, list)
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


@attrs.frozen(kw_only=True)
class Option:
    """What the schema says about one option (kept in the attrs field's metadata)."""

    name: str
    type: type
    help: str
    default: Any
    required: bool
    choices: tuple[Any, ...] | None = None
    group: str | None = None
    metavar: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def flag(self) -> str:
        """The command-line flag: ``--`` and the name with dashes."""
        return "--" + self.name.replace("_", "-")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able description, for runners that build their own forms or rules."""
        type_name = "list[str]" if self.type is list else self.type.__name__.lower()
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {"name": self.name, "flag": self.flag, "type": type_name, "default": default,
                "required": self.required, "choices": list(self.choices) if self.choices else None,
                "minimum": self.minimum, "maximum": self.maximum, "help": self.help, "group": self.group}


def option(
    *,
    type: type,  # noqa: A002 - reads like the argparse keyword it mirrors
    help: str,  # noqa: A002
    default: Any = attrs.NOTHING,
    choices: tuple[Any, ...] | None = None,
    group: str | None = None,
    metavar: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    converter: Any = None,
) -> Any:
    """An attrs field declaring one stage option; without ``default`` it is required.

    ``converter`` (optional) turns the checked value into the stage's own form when the
    stage builds its options object; it may raise :class:`UserError`."""
    if type not in TYPES:
        raise TypeError(f"option type must be one of {', '.join(t.__name__ for t in TYPES)}, got {type!r}")
    if type is bool and default is attrs.NOTHING:
        default = False
    meta = {"type": type, "help": help, "choices": tuple(choices) if choices else None, "group": group,
            "metavar": metavar, "minimum": minimum, "maximum": maximum}
    return attrs.field(default=default, converter=converter, metadata={_KEY: meta})


def options_of(schema: type) -> list[Option]:
    """The options a schema declares, in declaration order (fields without metadata are not options)."""
    found = []
    for f in attrs.fields(schema):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        required = f.default is attrs.NOTHING
        found.append(Option(name=f.name, default=None if required else f.default, required=required, **meta))
    return found


def describe(schema: type) -> list[dict[str, Any]]:
    """The schema as JSON-able rows (name, flag, type, default, choices, bounds, help, group), in declaration order."""
    return [o.as_dict() for o in options_of(schema)]


# ---------------------------------------------------------------- the command line


def _help(o: Option) -> str:
    # the default is stated here, from the schema, and nowhere else
    shown = o.default not in (None, False, (), "")
    value = ",".join(o.default) if isinstance(o.default, tuple) else o.default
    return o.help + (f" (default: {value})" if shown else "")


def add_arguments(parser: argparse.ArgumentParser, schema: type) -> None:
    """One flag per option. Values stay text here: :func:`validate` converts and checks
    them, so that the command line and Python calls get the same messages."""
    groups: dict[str | None, Any] = {}
    for o in options_of(schema):
        if o.group not in groups:
            groups[o.group] = parser.add_argument_group(o.group) if o.group else parser
        target = groups[o.group]
        kw: dict[str, Any] = {"dest": o.name, "default": None, "help": _help(o)}
        if o.type is bool:
            kw["action"] = argparse.BooleanOptionalAction if o.default else "store_true"
        else:
            kw["metavar"] = o.metavar or ("{" + ",".join(map(str, o.choices)) + "}" if o.choices else None)
            if o.type is list:
                kw["nargs"] = "+"
        if o.required:
            kw["required"] = True
        target.add_argument(o.flag, **{k: v for k, v in kw.items() if v is not None or k == "default"})


# ---------------------------------------------------------------- checking values


def _refuse(o: Option, what: str, value: Any) -> UserError:
    return UserError(f"{o.flag} must be {what}, got {value!r}")


def _convert(o: Option, value: Any) -> Any:
    t = o.type
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _refuse(o, "true or false", value)
    if t is int:
        if isinstance(value, bool):
            raise _refuse(o, "a whole number", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _refuse(o, "a whole number", value)
    if t is float:
        if isinstance(value, bool):
            raise _refuse(o, "a number", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _refuse(o, "a number", value) from None
    if t is Path:
        if isinstance(value, str | os.PathLike):
            if not os.fspath(value).strip():  # Path("") is the current folder: never what was meant
                raise UserError(f"{o.flag} is empty: pass a folder (an empty path would mean the current folder)")
            return Path(value).expanduser()
        raise _refuse(o, "a path", value)
    if t is list:
        items = [value] if isinstance(value, str | int | os.PathLike) and not isinstance(value, bool) else value
        if isinstance(items, Mapping) or not hasattr(items, "__iter__"):
            raise _refuse(o, "a list of names", value)
        return tuple(_text(o, v) for v in items)
    return _text(o, value)


def _text(o: Option, value: Any) -> str:
    # experiment names like 20240626 may arrive as numbers; they are names all the same
    if isinstance(value, str):
        return value
    if isinstance(value, int | os.PathLike) and not isinstance(value, bool):
        return str(value)
    raise _refuse(o, "text", value)


def _check(o: Option, value: Any) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if o.choices:
        for v in values:
            if v not in o.choices:
                raise UserError(f"unknown {o.flag} {v!r} (choose from {', '.join(map(str, o.choices))})")
    if o.minimum is not None and o.maximum is not None and not o.minimum <= value <= o.maximum:
        raise UserError(f"{o.flag} must be between {o.minimum:g} and {o.maximum:g}, got {value}")
    if o.minimum is not None and value < o.minimum:
        raise UserError(f"{o.flag} must be at least {o.minimum:g}, got {value}")
    if o.maximum is not None and value > o.maximum:
        raise UserError(f"{o.flag} must be at most {o.maximum:g}, got {value}")


def unknown_key(key: str, known: list[str], stage: str) -> UserError:
    """The error for an option the schema lacks, naming the closest valid key."""
    close = difflib.get_close_matches(key.replace("-", "_").lstrip("_"), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid options: {', '.join(known)}"
    return UserError(f"unknown option {key!r} for stage {stage}; {hint}")


def validate(schema: type, options: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """Every option by name, converted and checked; the schema's default where not given.

    ``None`` means "not given". Unknown keys, values of the wrong type, values outside
    the choices or bounds and missing required options are a :class:`UserError`.
    """
    declared = {o.name: o for o in options_of(schema)}
    for key in options:
        if key not in declared:
            raise unknown_key(str(key), list(declared), stage)
    out: dict[str, Any] = {}
    for name, o in declared.items():
        value = options.get(name)
        if value is None:
            if o.required:
                raise UserError(f"{o.flag} is required")
            out[name] = o.default
            continue
        value = _convert(o, value)
        _check(o, value)
        out[name] = value
    return out
