"""`ssdlite train`: train a detector on a VOC, COCO or YOLO dataset, or resume a run.

Flags are generated from the fields of :class:`ssdlite.engine.config.TrainConfig`; ``--config``
sets the defaults and flags given on the command line override it. Under ``torchrun`` every
process runs this command; only rank 0 writes the run directory.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

#: Settings that may differ when resuming: they do not change what is computed (or, for ``epochs``,
#: the user explicitly extends the run; the cosine schedule then stretches from the resumed step).
RESUME_OVERRIDABLE = ("device", "workers", "val_every", "log_every", "stop_after", "epochs", "data")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ssdlite.cli.options import MINUTES
    from ssdlite.engine.config import add_config_arguments
    from ssdlite.engine.recipe import DERIVED

    p = subparsers.add_parser(
        "train",
        help="train a detector (or resume a run) and write a run directory",
        description="Train SSDLite on a dataset. The run directory gets config.yaml, metrics.jsonl, TensorBoard "
        "events, last.pt, best.pt (best validation mAP), model.safetensors and training_curves.png. "
        "Run it under `torchrun --nproc_per_node N` for data-parallel training.",
    )
    p.add_argument("--out", help="run directory to write (required unless --resume)")
    p.add_argument("--config", dest="config_file", help="YAML file with the defaults (sections model, data, optim)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt, exactly")
    p.add_argument("--time-budget", type=MINUTES, metavar="MINUTES",
                   help="finish training within this many minutes (plus the final evaluation): the epochs (or, if needed, a "
                   "smaller input) are fitted to the measured speed of a few training steps on this machine, and re-planned "
                   "during training when the speed changes")
    p.add_argument("--search", action="store_true",
                   help="choose the augmentation, input size and learning rate by short trials on the training data "
                   "(80%% trained, 20%% scored) within --time-budget (default 30 minutes), then train the best")
    add_config_arguments(p, derived=DERIVED)  # a new run derives these from the data (engine/recipe.py)
    p.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    """``(config, run_dir, checkpoint or None, names of the fields given)`` from the flags, the config file and a
    resumed run."""
    from ssdlite.engine.checkpoint import load_checkpoint
    from ssdlite.engine.config import TrainConfig, fields_in_yaml, load_yaml, overrides_from_args
    from ssdlite.errors import UserError

    overrides = overrides_from_args(args)
    if args.resume:
        if args.time_budget is not None or args.search:
            raise UserError("--time-budget and --search plan a new run; a resumed run keeps the budget (and the plan) of its checkpoint")
        ckpt = load_checkpoint(args.resume)
        config = TrainConfig.from_dict(ckpt["config"], ckpt["path"])
        changed = sorted(k for k, v in overrides.items() if k not in RESUME_OVERRIDABLE and config.replace(**{k: v}) != config)
        if changed or args.config_file:
            what = ", ".join(changed) if changed else "--config"
            raise UserError(
                f"{ckpt['path']}: a resumed run keeps its configuration; cannot change {what} "
                f"(only {', '.join(RESUME_OVERRIDABLE)} may be given with --resume)"
            )
        run_dir = Path(args.out or args.resume)
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UserError(f"--out {args.out}: a resumed run continues in its own directory {args.resume}")
        return config.replace(**overrides), run_dir, ckpt, set()
    if not args.out:
        raise UserError("--out RUN_DIR is required (or --resume RUN_DIR to continue a run)")
    _check_new_run_dir(Path(args.out))
    config = load_yaml(args.config_file) if args.config_file else TrainConfig()
    config = config.replace(**overrides)
    if not config.data.data:
        raise UserError("--data PATH is required (or a data: section with data: PATH in --config)")
    given = set(overrides) | (fields_in_yaml(args.config_file) if args.config_file else set())
    return config, Path(args.out), None, given


#: What a run directory holds that a new run would overwrite (the trainer writes each of these).
RUN_FILES = ("last.pt", "best.pt", "model.safetensors", "metrics.jsonl")


def _check_new_run_dir(out: Path) -> None:
    """A new run's --out can be written and holds no earlier run: training would overwrite its checkpoints."""
    from ssdlite.errors import UserError
    from ssdlite.files import check_output_path

    if check_output_path(out, "--out", folder=True):
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found:
            raise UserError(f"--out {out}: holds a training run ({', '.join(found)}); continue it with --resume {out}, "
                            "or give another --out (a new run would overwrite it)")


def apply_recipe(config, given: set[str], time_budget: float | None, started: float | None = None, search: bool = False):
    """``(config, training split, validation split, recipe text, budget or None)``: the settings not given derived from
    the data (with ``search``, measured by trials: :mod:`ssdlite.engine.search`); ``started`` (a ``time.perf_counter()``
    reading) is when the command began, for the budget."""
    from ssdlite.data import build_dataset
    from ssdlite.engine import build_datasets
    from ssdlite.engine.budget import TimeBudget
    from ssdlite.engine.distributed import resolve_device
    from ssdlite.engine.recipe import DataStats, derive_recipe, fit_to_budget, recipe_text, time_note
    from ssdlite.errors import UserError

    if (time_budget is not None or search) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--time-budget and --search measure one process's training; under torchrun give --epochs instead")
    device = resolve_device(config.device)
    plain = build_dataset(config.data.data, config.data.format, config.data.train_split, hold_out=True)
    stats = DataStats.of(plain)
    config, choices = derive_recipe(config, given, stats, device)
    config = config.resolved()
    train_set, val_set = build_datasets(config)
    budget = None
    if search:
        from ssdlite.engine.recipe import SMALL_SIDE
        from ssdlite.engine.search import DEFAULT_MINUTES, search_recipe

        config, more, speed = search_recipe(config, given, time_budget, device, stats.share_below(config.model.size, SMALL_SIDE),
                                            len(val_set) if val_set is not None else 0)
        choices = [c for c in choices if c.name not in {m.name for m in more}] + more
        train_set, val_set = build_datasets(config)
        budget = TimeBudget((time_budget or DEFAULT_MINUTES) * 60, started, speed)
    elif time_budget is not None:
        config, train_set, more, speed = fit_to_budget(
            config.resolved(), given, time_budget, train_set, len(val_set) if val_set is not None else 0, device,
            lambda c: build_datasets(c.resolved())[0], started=started,
        )
        config, choices = config.resolved(), [c for c in choices if c.name not in {m.name for m in more}] + more
        budget = TimeBudget(time_budget * 60, started, speed)
    text = recipe_text(choices) if choices else None
    if budget is None and choices and int(os.environ.get("WORLD_SIZE", "1")) == 1:  # one process's speed (not under torchrun)
        timing = time_note(config, given, choices, train_set, len(val_set) if val_set is not None else 0, device)
        text = f"{text}\n{timing}" if timing else text
    return config, train_set, val_set, text, budget


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the budget counts the time before the first step too (imports included)
    from ssdlite.doctor.collapse import check_input_dependence
    from ssdlite.engine import build_datasets, train

    config, run_dir, ckpt, given = resolve_config(args)
    note, budget = None, None
    if ckpt is None:
        config, train_set, val_set, note, budget = apply_recipe(config, given, args.time_budget, started, args.search)
        if note:
            print(note, flush=True)
    else:
        train_set, val_set = build_datasets(config)
    result = train(config, train_set, val_set, run_dir, resume=ckpt, validation_checks=[check_input_dependence], config_note=note,
                   budget=budget)
    if result.last_val is not None:
        from ssdlite.engine.recipe import DataStats, weak_classes

        why = weak_classes(result.last_val, DataStats.of(train_set), config, str(run_dir))
        if why:
            print(why)
    if result.best_metric is not None:
        print(f"best {config.best_metric} {result.best_metric:.4f} at epoch {result.best_epoch}; run directory {run_dir}")
    else:
        print(f"trained {result.epochs_done} epochs; run directory {run_dir}")
    return 0
