"""The `ssdlite` command line: one module per sub-command, listed explicitly below."""

from __future__ import annotations

import argparse
import sys

from ssdlite.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from ssdlite.cli import anchors, benchmark, convert, data, demo, doctor, evaluate, export, predict, quantize, serve, summary, train

    parser = argparse.ArgumentParser(
        prog="ssdlite",
        description="Train, evaluate, run and export SSDLite object detectors.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (summary, data, train, evaluate, predict, serve, export, quantize, benchmark, doctor, anchors, convert, demo):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv=None`` means the process's own arguments (the ``ssdlite`` program), which
    may first re-execute itself with a faster allocator (:mod:`ssdlite.cli._cpu`) chosen for the runtime the
    arguments name, before the full parser (which imports PyTorch) is built."""
    if argv is None:
        from ssdlite.cli._cpu import keeps_system_allocator, relaunch_for_speed

        relaunch_for_speed(keeps_system_allocator(sys.argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"ssdlite {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssdlite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
