"""``ssdlite data check`` (find every problem in a dataset) and ``ssdlite data synth`` (write the shapes dataset)."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ssdlite.cli.options import IMAGE_COUNT, add_format
from ssdlite.data import KINDS, SHAPES, check_dataset, write_synthetic
from ssdlite.engine.config import MAX_SEED
from ssdlite.models.config import MAX_SIZE
from ssdlite.models.options import number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check datasets and write the synthetic one")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    commands.required = True

    kinds = "\n".join(f"  {kind:<20} {severity:<8} {action}" for kind, (severity, action) in KINDS.items())
    check = commands.add_parser(
        "check",
        help="read every annotation and image, print one line per problem, then counts per kind",
        description="Read every annotation and decode every image; print one line per problem\n"
        "(file: severity: what; what happens [kind]), then the counts per kind. An annotation entry\n"
        "that cannot be read (object, label line, COCO annotation, listed sample) is always named.\n\n"
        "Exit status: 0 when every sample is usable, 1 when any sample (or the dataset) would be\n"
        "unusable (with --strict: when anything had to be fixed), 2 when PATH is not a dataset.",
        epilog=f"problem kinds (training applies the same policy):\n{kinds}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("path", metavar="PATH", help="dataset folder, COCO .json or YOLO .yaml")
    add_format(check)
    check.add_argument("--split", help="split to check (default: all)")
    check.add_argument("--strict", action="store_true", help="treat every warning as an error")
    check.add_argument("--quiet", action="store_true", help="print only the per-kind counts")
    check.set_defaults(func=run_check)

    synth = commands.add_parser("synth", help="write the built-in synthetic shapes dataset (Pascal VOC layout)")
    synth.add_argument("out", metavar="OUT", help="output folder")
    synth.add_argument("--num-train", type=IMAGE_COUNT, default=1000, help="training images (default 1000)")
    synth.add_argument("--num-val", type=IMAGE_COUNT, default=200, help="validation images (default 200)")
    synth.add_argument("--size", type=number(int, ge=1, le=MAX_SIZE), default=320, help="image side in pixels (default 320)")
    synth.add_argument("--seed", type=number(int, ge=0, le=MAX_SEED), default=0, help="base seed; same seed, same bytes (default 0)")
    synth.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier synthetic dataset")
    synth.set_defaults(func=run_synth)


def _progress(description: str, total: int):
    """A progress bar on stderr (only on a terminal) that closes itself after the last image."""
    bar = tqdm(total=total, desc=description, unit="img", disable=None, leave=False)

    def tick(index: int) -> None:
        bar.update(1)
        if index + 1 >= total:
            bar.close()

    return tick


def run_check(args: argparse.Namespace) -> int:
    reports = check_dataset(args.path, format=args.format, split=args.split, progress=_progress)
    ok = True
    for report in reports:
        if not args.quiet:
            for problem in report.problems:
                print(problem.line())
        print(report.summary())
        ok = ok and report.ok(strict=args.strict)
    if not ok:
        escalated = " (--strict: fixed problems count too)" if args.strict else ""
        print(f"FAILED: the dataset or some of its samples cannot be used{escalated}", file=sys.stderr)
        return 1
    warnings = sum(1 for report in reports for p in report.problems if p.severity == "warning")
    if warnings:
        print(f"passed with {warnings} warning{'s' if warnings != 1 else ''}; --strict fails on them", file=sys.stderr)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    total = args.num_train + args.num_val
    with tqdm(total=total, desc="writing shapes", unit="img", disable=None) as bar:
        out = write_synthetic(
            args.out,
            num_train=args.num_train,
            num_val=args.num_val,
            size=args.size,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=lambda n: bar.update(1),
        )
    print(
        f"wrote {args.num_train} train + {args.num_val} val images of {args.size}x{args.size} "
        f"({', '.join(SHAPES)}) to {out}"
    )
    return 0
