"""Frozen dataclasses as configuration: one field, one YAML key, one command-line flag.

A field declared with :func:`option` carries its help text and, where there is one, its list of
choices. From the dataclass alone this module reads a nested dict (YAML, a checkpoint) with strict
checks that name the file and the key, writes it back as plain lists and dicts, and generates the
argparse flags, so a setting has one name, one default and one help text wherever it appears.

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
import types
import typing
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any

from ssdlite.errors import ConfigError

#: Separates the levels of a per-level list on the command line.
LEVEL_SEPARATOR = "/"


def option(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with its flag's help text (and choices) attached."""
    return field(default=default, metadata={"help": help, "choices": choices})


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
        kwargs[name] = value
    return cls(**kwargs)


def _levels(tokens: list[str]) -> list:
    """Command-line tokens of a per-level list: ``2 3`` (every level) or ``2 / 2 3 / 2`` (one list per level)."""
    if LEVEL_SEPARATOR not in tokens:
        return [float(t) for t in tokens]
    levels, current = [], []
    for token in tokens + [LEVEL_SEPARATOR]:
        if token == LEVEL_SEPARATOR:
            if not current:
                raise argparse.ArgumentTypeError(f"an empty level in {' '.join(tokens)!r}")
            levels.append(current)
            current = []
        else:
            current.append(float(token))
    return levels


class _PerLevel(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, _levels(list(values)))
        except (ValueError, argparse.ArgumentTypeError) as err:
            parser.error(f"{option_string}: {err}")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def help_text(f: dataclasses.Field) -> str:
    """A field's help with its default, as every generated flag shows it."""
    default = f.default if f.default is not dataclasses.MISSING else None
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` (``--batch-size``, ``--lr``, ...); unset flags stay ``None``."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        kind, depth = _shape(hints[f.name])
        flag, text, choices = flag_name(f.name), help_text(f), f.metadata.get("choices")
        if kind is bool and depth == 0:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif depth == 2:
            parser.add_argument(flag, dest=f.name, nargs="+", action=_PerLevel, default=None, metavar="R", help=text)
        else:
            parser.add_argument(
                flag, dest=f.name, type=kind, nargs="+" if depth else None, choices=choices, default=None, help=text
            )


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
