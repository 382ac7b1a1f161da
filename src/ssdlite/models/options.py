"""Frozen dataclasses as configuration: one field, one YAML key, one command-line flag.

A field declared with :func:`option` carries its help text and, where there is one, its list of
choices and its valid range (:class:`Bounds`: ``gt``/``ge``/``lt``/``le`` and a list's ``length``). From
the dataclass alone this module reads a nested dict (YAML, a checkpoint) with strict checks that name the
file and the key, writes it back as plain lists and dicts, and generates the argparse flags, so a setting
has one name, one default, one help text and one range wherever it appears.

Validation contract: a value is checked against its field where it is read, by the same rule in three
places: the flag's ``type`` (argparse's usual error, exit 2: ``argument --lr: invalid value '-0.1': must be
in (0, 10]``), :func:`from_dict` for ``--config`` files and checkpoints (``run.yaml: optim.lr = -0.1: must be
in (0, 10]``) and :class:`Settings`'s ``__post_init__`` for library callers (``lr = -0.1: must be in (0, 10]``);
every error is a :class:`~ssdlite.errors.ConfigError` (or the parser's error). A float field is always finite.
Commands' own numeric flags use :func:`number` (or :func:`field_type` for a flag that mirrors a field).

Flags are generated with ``default=None`` ("not given"); the help text states the field's default.
A command fills the unset fields from its own starting point (the dataclass defaults, a ``--config``
file, a preset), which is how precedence (defaults < file < flags) works everywhere.

Value syntax: ``T | None`` fields accept null; ``tuple[T, ...]`` fields take a list (``nargs="+"`` on
the command line); ``tuple[tuple[T, ...], ...]`` fields (one list per level) also accept one flat list,
and on the command line levels are separated by ``/`` (``--aspect-ratios 2 / 2 3 / 2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ssdlite.errors import ConfigError

#: Separates the levels of a per-level list on the command line.
LEVEL_SEPARATOR = "/"


def _num(x: float) -> str:
    """A range's end as a person writes it: ``4294967295``, ``0.5``, ``1e-09``."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Bounds:
    """A setting's valid range: each number (each element of a list) within ``gt``/``ge``/``lt``/``le``; a
    list of exactly ``length`` values."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    length: int | None = None

    def rule(self) -> str:
        """What is allowed, as the errors say it: ``> 0``, ``in [0, 1)``, ``3 values, each > 0``."""
        low = (f"({_num(self.gt)}" if self.gt is not None else f"[{_num(self.ge)}") if (self.gt, self.ge) != (None, None) else None
        high = (f"{_num(self.lt)})" if self.lt is not None else f"{_num(self.le)}]") if (self.lt, self.le) != (None, None) else None
        if low and high:
            text = f"in {low}, {high}"
        elif low:
            text = f"{'>' if low[0] == '(' else '>='} {low[1:]}"
        elif high:
            text = f"{'<' if high[-1] == ')' else '<='} {high[:-1]}"
        else:
            text = "finite"
        return text if self.length is None else f"{self.length} values, each {text}"

    def holds(self, x: float) -> bool:
        return (
            (self.gt is None or x > self.gt) and (self.ge is None or x >= self.ge)
            and (self.lt is None or x < self.lt) and (self.le is None or x <= self.le)
        )


def option(
    default: Any, help: str, choices: tuple | None = None, *, gt: float | None = None, ge: float | None = None,
    lt: float | None = None, le: float | None = None, length: int | None = None, shown: str | None = None,
) -> Any:
    """A dataclass field with its flag's help text, choices and valid range (see :class:`Bounds`) attached.

    ``shown`` is the default as the help states it when the stored one (``None``: "resolved later") says nothing to a
    reader: ``size``'s ``"320; 300 for vgg16"``."""
    bounds = Bounds(gt, ge, lt, le, length) if (gt, ge, lt, le, length) != (None,) * 5 else None
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds, "shown": shown})


def _numbers(value: Any) -> list:
    """The numbers of a value: itself, or a (per-level) list's elements."""
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def violation(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with ``value`` for field ``f`` (``"must be > 0"``), or None; ``None`` values are the
    type's business (:func:`coerce`)."""
    if value is None:
        return None
    bounds = f.metadata.get("bounds")
    if bounds is not None and bounds.length is not None and isinstance(value, (list, tuple)) and len(value) != bounds.length:
        return f"must be {bounds.rule()}"
    return next(filter(None, (_number_violation(bounds, x) for x in _numbers(value))), None)


def _number_violation(bounds: Bounds | None, x: float) -> str | None:
    if isinstance(x, float) and not math.isfinite(x):
        return "must be a finite number"
    if bounds is not None and not bounds.holds(x):
        return f"must be {bounds.rule()}"
    return None


def _shown(value: Any) -> str:
    """A value as a YAML file or a command line writes it."""
    value = plain(value)
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


class Settings:
    """Base of the configuration dataclasses: every field is checked against its range on construction
    (library callers get the same rule as files and flags)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = violation(f, getattr(self, f.name))
            if problem:
                raise ConfigError(f"{f.name} = {_shown(getattr(self, f.name))}: {problem}")


def plain(value: Any) -> Any:
    """Nested dicts, lists and scalars only (tuples become lists): what YAML, JSON and checkpoints hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return annotation


def _shape(annotation: Any) -> tuple[type, int]:
    """``(scalar type, nesting)`` of a field: 0 for ``T``, 1 for ``tuple[T, ...]``, 2 for ``tuple[tuple[T, ...], ...]``."""
    hint, depth = _strip_optional(annotation), 0
    while typing.get_origin(hint) is tuple:
        hint, depth = typing.get_args(hint)[0], depth + 1
    return hint, depth


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _scalar(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked and converted to the field's type; ``ConfigError`` naming ``where`` otherwise."""
    if value is None:
        if _optional(annotation):
            return None
        raise ConfigError(f"{where}: must not be empty")
    kind, depth = _shape(annotation)
    if depth == 0:
        return _scalar(value, kind, where)
    if not isinstance(value, (list, tuple)):
        value = [value]
    if depth == 2 and not any(isinstance(v, (list, tuple)) for v in value):
        return tuple(_scalar(v, kind, where) for v in value)  # one flat list: the same for every level
    if depth == 2:
        return tuple(tuple(_scalar(v, kind, where) for v in (level if isinstance(level, (list, tuple)) else [level])) for level in value)
    return tuple(_scalar(v, kind, where) for v in value)


def from_dict(cls: type, data: Any, source: str, prefix: str = "", nested: dict[str, Callable] | None = None) -> Any:
    """Build ``cls`` from a dict; unknown keys, wrong types and values outside the choices raise ``ConfigError``
    (a ``UserError`` for the command line, a ``ValueError`` for library callers).

    ``nested`` maps a field name to the reader of its section, called as ``reader(data, source, prefix)``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        where = f"{source}: {prefix}{name}"
        if nested and name in nested:
            kwargs[name] = nested[name](value or {}, source, f"{prefix}{name}.")
            continue
        value = coerce(value, hints[name], where)
        choices = known[name].metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        problem = violation(known[name], value)
        if problem:
            raise ConfigError(f"{where} = {_shown(value)}: {problem}")
        kwargs[name] = value
    return cls(**kwargs)


def flag_type(f: dataclasses.Field, kind: type) -> Callable[[str], Any]:
    """The argparse ``type`` of a numeric field's flag: :func:`number` with the field's range."""
    return _number_type(kind, f.metadata.get("bounds"))


def field_named(cls: type, name: str) -> dataclasses.Field:
    """Field ``name`` of the dataclass ``cls``."""
    return next(f for f in fields(cls) if f.name == name)


def field_type(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse ``type`` of field ``name`` of ``cls``, for a command's own flag of the same setting (the demo's
    ``--epochs``): the field's type and range."""
    return flag_type(field_named(cls, name), _shape(typing.get_type_hints(cls)[name])[0])


def number(kind: type, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Callable[[str], Any]:
    """The argparse ``type`` of a command's own numeric flag (``type=number(int, ge=1)``): one value parsed as
    ``kind`` (``int`` or ``float``, finite) and checked against the range, so a bad value is the parser's usual
    error (exit 2) naming the flag and what is allowed, as for the generated flags."""
    return _number_type(kind, Bounds(gt, ge, lt, le))


def _number_type(kind: type, bounds: Bounds | None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        problem = _number_violation(bounds, value)
        if problem:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {problem}")
        return value

    parse.kind = kind  # what the flag takes (tests find the numeric flags by it)
    return parse


def _levels(tokens: list[str], number: Callable[[str], float]) -> list:
    """Command-line tokens of a per-level list: ``2 3`` (every level) or ``2 / 2 3 / 2`` (one list per level),
    each number read by ``number``."""
    if LEVEL_SEPARATOR not in tokens:
        return [number(t) for t in tokens]
    levels, current = [], []
    for token in tokens + [LEVEL_SEPARATOR]:
        if token == LEVEL_SEPARATOR:
            if not current:
                raise argparse.ArgumentTypeError(f"an empty level in {' '.join(tokens)!r}")
            levels.append(current)
            current = []
        else:
            current.append(number(token))
    return levels


class _PerLevel(argparse.Action):
    def __init__(self, *args: Any, number: Callable[[str], float] = float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.number = number

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, _levels(list(values), self.number))
        except (ValueError, argparse.ArgumentTypeError) as err:
            parser.error(f"{option_string}: {err}")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


#: What the help says of a default that a command derives for each run (``ssdlite train``'s recipe) instead of using.
DERIVED_DEFAULT = "derived from the data"


def help_text(f: dataclasses.Field, derived: bool = False) -> str:
    """A field's help with its default and range, as every generated flag shows it; ``derived``: the command derives
    the value when the flag is not given, so the help names no default it would not use."""
    default = f.default if f.default is not dataclasses.MISSING else None
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    shown = DERIVED_DEFAULT if derived else f.metadata.get("shown") or shown
    bounds = f.metadata.get("bounds")
    allowed = f"; {bounds.rule()}" if bounds is not None else ""
    return f"{f.metadata.get('help', '')} (default: {shown}{allowed})".replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, skip: tuple[str, ...] = (),
                  derived: frozenset[str] = frozenset()) -> None:
    """One flag per field of ``cls`` (``--batch-size``, ``--lr``, ...); unset flags stay ``None``. The fields in
    ``derived`` are the ones the command derives when not given: their help says so (:func:`help_text`)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        kind, depth = _shape(hints[f.name])
        flag, text, choices = flag_name(f.name), help_text(f, f.name in derived), f.metadata.get("choices")
        if kind is bool and depth == 0:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif depth == 2:
            parser.add_argument(flag, dest=f.name, nargs="+", action=_PerLevel, number=flag_type(f, kind), default=None,
                                metavar="R", help=text)
        else:
            number = kind in (int, float) and not choices
            length = getattr(f.metadata.get("bounds"), "length", None)
            parser.add_argument(
                flag, dest=f.name, type=flag_type(f, kind) if number else kind, nargs=(length or "+") if depth else None,
                choices=choices, default=None, help=text,
            )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
