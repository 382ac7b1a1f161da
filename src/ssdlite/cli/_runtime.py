"""Which runtime a command runs, read from its arguments without PyTorch: by the command itself, and before it,
by :mod:`ssdlite.cli._cpu` (the allocator has to be chosen before PyTorch loads, and most commands' full
parsers import PyTorch through the model flags they generate).

:data:`RUNTIME_FLAGS` says, for each command that runs a runtime, which flag names the runtime and which names the
file whose suffix decides when that flag is left out. The commands declare these flags with :func:`add_backend` /
their own ``--format``, set ``runtime_of`` with :func:`resolver`, and ``tests/cli/test_runtime_choices.py`` checks
that :func:`runtime_of_argv` (the torch-free pre-parse) and each command's full parser agree.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ssdlite.deploy import runtimes
from ssdlite.errors import UserError

EXPORT_DEFAULT = runtimes.rows(exports=True)[0].name  # export's --format without the flag
#: command -> (flag naming the runtime, flag naming the file it runs, the runtime flag's default); None where the
#: command has no such flag (quantize reads an .onnx: its suffix names the runtime).
RUNTIME_FLAGS: dict[str, tuple[str | None, str | None, str | None]] = {
    "predict": ("--backend", "--weights", None),
    "serve": ("--backend", "--weights", None),
    "eval": ("--backend", "--weights", None),
    "benchmark": ("--backend", "--weights", None),
    "export": ("--format", None, EXPORT_DEFAULT),
    "quantize": (None, "--onnx", None),
}


def _dest(flag: str | None) -> str | None:
    return flag.removeprefix("--").replace("-", "_") if flag else None


def add_backend(parser: argparse.ArgumentParser, choices: Sequence[str] = (), what: str = "--weights") -> None:
    """``--backend``: every runtime (the table's names and older spellings, then ``choices``), default by suffix."""
    parser.add_argument(
        "--backend", choices=runtimes.choices(backend=True) + tuple(choices), default=None,
        help=f"runtime (default: the one that reads {what}: {runtimes.described()}, else {runtimes.DEFAULT.name})",
    )


def resolver(command: str) -> Callable[[argparse.Namespace], runtimes.Runtime]:
    """``args -> Runtime`` for ``command``: its runtime flag when given, else its file's suffix, else the default."""
    name_flag, file_flag, _ = RUNTIME_FLAGS[command]

    def runtime_of(args: argparse.Namespace) -> runtimes.Runtime:
        name = getattr(args, _dest(name_flag), None) if name_flag else None
        path = getattr(args, _dest(file_flag), None) if file_flag else None
        return runtimes.chosen(name, path)

    return runtime_of


def runtime_of_argv(argv: Sequence[str]) -> runtimes.Runtime | None:
    """The runtime the command line ``argv`` runs (None: a command that runs none), parsed with only the flags of
    :data:`RUNTIME_FLAGS`; a malformed command line gives None (the full parser reports it)."""
    parser = argparse.ArgumentParser(add_help=False)
    sub = parser.add_subparsers(dest="command")
    for command, (name_flag, file_flag, default) in RUNTIME_FLAGS.items():
        p = sub.add_parser(command, add_help=False)
        if name_flag:
            p.add_argument(name_flag, default=default)
        if file_flag:
            p.add_argument(file_flag)
    if not argv or argv[0] not in RUNTIME_FLAGS:
        return None
    try:
        args, _ = parser.parse_known_args(list(argv))
        return resolver(args.command)(args)
    except (SystemExit, UserError):
        return None
