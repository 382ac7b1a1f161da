"""Helpers shared by the commands: the model flags, and a model from flags or from a trained file.

Every command that builds a model (``train``, ``summary``, ``benchmark``, ``doctor``, ``anchors fit``,
``demo``) gets the same model flags, generated from :class:`ssdlite.models.config.ModelConfig`: one
name, one default and one help text everywhere (``tests/cli/test_model_flags.py`` walks the parsers).
The flags default to "not given", so a command can start from its own preset (the demo's small
model, a ``--config`` file) and the flags override it.
"""

from __future__ import annotations

import argparse
import sys

from ssdlite.engine.config import MAX_BATCH, MAX_WORKERS
from ssdlite.errors import UserError
from ssdlite.models import options
from ssdlite.models.config import ModelConfig
from ssdlite.models.options import number

#: Classes (with the background) of a model built without a dataset: COCO's 91, as the papers' tables.
COCO_NUM_CLASSES = 91

# The ranges of the commands' own numeric flags (the configuration fields declare theirs, see
# ssdlite.models.options), one type per concept, so the same flag is checked the same way in every command:
# ``p.add_argument("--batch-size", type=BATCH, ...)``. Each upper end is far beyond any real use, so a mistyped
# value is an error before any work rather than an allocation or a loop that takes the machine down.
#: Images per network call (predict, eval, serve's micro-batch, benchmark, a fixed export batch).
BATCH = number(int, ge=1, le=MAX_BATCH)
#: Data-loader worker processes.
WORKERS = number(int, ge=0, le=MAX_WORKERS)
#: Runtime threads.
THREADS = number(int, ge=1, le=4096)
#: A detection score threshold.
SCORE = number(float, ge=0, le=1)
#: A number of images to generate or draw, and of calibration images (at least one).
MAX_IMAGES = 1_000_000
IMAGE_COUNT = number(int, ge=0, le=MAX_IMAGES)
CALIB_IMAGES = number(int, ge=1, le=MAX_IMAGES)
#: A time budget in minutes: at most a year.
MINUTES = number(float, gt=0, le=525_600)


# The flags of running a model, shared by predict, serve, eval, benchmark and demo: one definition each, so a flag
# has one default and one help in every command (tests/cli/test_shared_flags.py builds every parser and checks).


def add_weights(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: bool = True) -> None:
    """``--weights``: a trained model in any form a runtime reads (a command without it says what it does instead)."""
    from ssdlite.deploy import runtimes

    parser.add_argument("--weights", required=required, help=f"run directory, checkpoint .pt, .safetensors, or an exported "
                        f"file ({', '.join(runtimes.exported_suffixes())}) run on its runtime (or --backend)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``: the training configuration's field (its default ``auto`` and its help), for every command."""
    from ssdlite.engine.config import TrainConfig

    device = options.field_named(TrainConfig, "device")
    parser.add_argument("--device", default=device.default, help=options.help_text(device))


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads``: the runtime's intra-op threads."""
    parser.add_argument("--threads", type=THREADS, default=None, help="runtime threads (default: the runtime's choice)")


def add_score_threshold(parser: argparse.ArgumentParser) -> None:
    """``--score-threshold``: the detections a command keeps (``serve``: those of a request that gives no threshold)."""
    from ssdlite.deploy.predictor import SCORE_THRESHOLD

    parser.add_argument("--score-threshold", type=SCORE, default=SCORE_THRESHOLD,
                        help=f"keep detections scored at least this (default: {SCORE_THRESHOLD:g})")


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``: images per network call."""
    from ssdlite.deploy.predictor import BATCH_SIZE

    parser.add_argument("--batch-size", type=BATCH, default=BATCH_SIZE, help=f"images per network call (default: {BATCH_SIZE})")


def add_format(parser: argparse.ArgumentParser) -> None:
    """``--format``: the training configuration's field (the format table's names, "detected from the files")."""
    from ssdlite.engine.config import DataConfig

    field = options.field_named(DataConfig, "format")
    parser.add_argument("--format", choices=field.metadata["choices"], help=options.help_text(field))


def add_data_arguments(parser: argparse.ArgumentParser, split: str = "train", from_run: bool = False) -> None:
    """``--data``, ``--format`` and ``--split``: the dataset a command reads. ``--data`` is required unless
    ``from_run``: then :func:`data_from_run` takes the dataset a ``--weights`` run trained on."""
    default = "; default: the dataset the --weights run directory trained on (its config.yaml)" if from_run else ""
    parser.add_argument("--data", required=not from_run, help=f"dataset root (VOC folder, COCO JSON, YOLO data.yaml){default}")
    add_format(parser)
    parser.add_argument("--split", default=split, help=f"split to read (default: {split})")


def run_dataset(weights: str) -> tuple[str, str, str] | None:
    """``(dataset, train split, validation split)`` of the run whose directory is, or holds, ``weights``, read from
    its ``config.yaml``, when that names a dataset folder found from here (a relative path is relative to where
    training ran); else None."""
    from pathlib import Path

    from ssdlite.engine.config import load_yaml

    path = Path(weights)
    config_file = (path if path.is_dir() else path.parent) / "config.yaml"
    if not config_file.is_file():
        return None
    try:
        data = load_yaml(config_file).data
    except UserError:
        return None
    if not data.data or not Path(data.data).is_dir():
        return None
    return data.data, data.train_split, data.val_split


def data_from_run(args: argparse.Namespace) -> None:
    """Without ``--data``, set ``args.data`` to the dataset of the ``--weights`` run (:func:`run_dataset`), saying
    so; ``UserError`` when there is none."""
    if args.data:
        return
    found = run_dataset(args.weights) if getattr(args, "weights", None) else None
    if found is None:
        raise UserError("--data is required: give the dataset (the --weights are not a run directory whose config.yaml "
                        "names a dataset folder found from here)")
    args.data = found[0]
    print(f"data: {args.data}, the dataset the run trained on", file=sys.stderr)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ModelConfig` field, in a "model options" group."""
    options.add_arguments(parser.add_argument_group("model options"), ModelConfig)


def model_config_from_args(args: argparse.Namespace, base: ModelConfig | None = None) -> ModelConfig:
    """``base`` (default: the :class:`ModelConfig` defaults) with the model flags given on the command line."""
    try:
        return (base or ModelConfig()).replace(**options.given(args, ModelConfig))
    except ValueError as err:
        raise UserError(str(err)) from err


def model_from_args(args: argparse.Namespace, num_classes: int | None = None, base: ModelConfig | None = None):
    """The model the flags describe, for a dataset of ``num_classes`` (with the background) if given.

    Random weights apart from ``--backbone-weights``. Without a dataset ``--num-classes`` (default 91) sets the
    class count; with one, a ``--num-classes`` that disagrees with it is an error.
    """
    from ssdlite.models.factory import build_model

    config = model_config_from_args(args, base)
    if num_classes is not None and config.num_classes not in (None, num_classes):
        raise UserError(f"--num-classes {config.num_classes} does not match the dataset: {num_classes - 1} classes + the background = {num_classes}")
    config = config.replace(num_classes=num_classes or config.num_classes or COCO_NUM_CLASSES)
    try:
        return build_model(config)
    except ValueError as err:
        raise UserError(f"model: {err}") from err
