"""The training configuration: frozen dataclasses, a YAML file and command-line flags made from the fields.

Precedence, lowest first: the dataclass defaults, the ``--config`` YAML file, then flags given on the
command line. The resolved configuration is written to the run directory as ``config.yaml`` and
stored in every checkpoint, so a run can always be reproduced and resumed.

Defaults and where they come from (torchvision's ``references/detection`` SSDLite recipe trains
COCO for 600 epochs at lr 0.15 with batch 24 per GPU on 8 GPUs, i.e. global batch 192, SGD momentum
0.9, weight decay 4e-5, no decay on norm layers, cosine schedule with linear warm-up):

- ``lr = 0.03`` at ``batch_size = 32``: the reference's 0.15 / 192 linear scaling gives 0.025 at 32;
  rounded up slightly since small datasets converge in far fewer steps.
- ``epochs = 120``: small datasets (a few hundred images) need many passes, but nowhere near COCO's
  600 at 118k images; the data recipes in ``configs/`` set their own budget.
- ``weight_decay = 4e-5``, ``momentum = 0.9``, no decay on BN and biases: the reference values.
- ``warmup_epochs = 2``: torchvision warms up for 1000 iterations at most; on datasets of a few
  batches per epoch a couple of epochs gives the same effect.
- ``clip_grad = 10``: not in the reference; a safety net on small batches from random heads.
- ``precise_bn_images = 512``: BatchNorm statistics recomputed for the weights being evaluated
  (Wu & Johnson 2021); the TensorFlow BN momentum of the model lags far behind on short runs.
- ``ema_decay = 0.999``: the decay used by timm/YOLOv5-style EMA, with a warm-up of the decay
  (``decay * (1 - exp(-updates / 2000))``) so early averages are not dominated by the random init.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ssdlite.data import formats
from ssdlite.data.augment import PRESETS
from ssdlite.errors import UserError
from ssdlite.models import options
from ssdlite.models.config import ModelConfig
from ssdlite.models.options import option as _opt


#: Upper ends of the ranges (see ``ssdlite.models.options``), far beyond any real run, so a mistyped value is an
#: error before anything starts: data-loader processes per training process, epochs (COCO's reference recipe is
#: 600), a global batch (the large-batch ImageNet papers' 64k), a learning rate and a seed (numpy's legacy
#: generator takes 32 bits: larger seeds would alias).
MAX_WORKERS, MAX_EPOCHS, MAX_BATCH, MAX_LR, MAX_SEED = 256, 100_000, 65_536, 10.0, 2**32 - 1


@dataclass(frozen=True)
class DataConfig(options.Settings):
    """Where the images come from and how they are augmented."""

    data: str | None = _opt(None, "dataset root (VOC directory, COCO JSON, YOLO data.yaml, ...)")
    format: str | None = _opt(None, "dataset format", formats.names(), shown="detected from the files")
    train_split: str = _opt("train", "split to train on")
    val_split: str = _opt("val", "split to validate on (empty: no validation)")
    augment: str = _opt("ssdlite", "augmentation preset (ssdlite.data.augment)", PRESETS)
    workers: int = _opt(2, "data loader worker processes per training process", ge=0, le=MAX_WORKERS)


@dataclass(frozen=True)
class OptimConfig(options.Settings):
    """Optimizer, learning-rate schedule and gradient clipping."""

    optimizer: str = _opt("sgd", "optimizer", ("sgd", "adamw"))
    lr: float = _opt(0.03, "peak learning rate (after warm-up) for the whole global batch", gt=0, le=MAX_LR)
    momentum: float = _opt(0.9, "SGD momentum (AdamW: beta1)", ge=0, lt=1)
    weight_decay: float = _opt(4e-5, "weight decay (never applied to BatchNorm parameters and biases)", ge=0)
    schedule: str = _opt("cosine", "learning-rate schedule after warm-up", ("cosine", "sgdr", "multistep"))
    warmup_epochs: float = _opt(2.0, "linear warm-up length in epochs", ge=0, le=MAX_EPOCHS)
    warmup_factor: float = _opt(0.001, "learning rate at the start of the warm-up, as a fraction of lr", ge=0, le=1)
    min_lr_ratio: float = _opt(0.0, "cosine floor as a fraction of lr", ge=0, le=1)
    sgdr_period: float = _opt(10.0, "SGDR: length of the first cycle in epochs", gt=0, le=MAX_EPOCHS)
    sgdr_mult: float = _opt(2.0, "SGDR: each cycle is this many times longer than the last", ge=1)
    milestones: tuple[float, ...] = _opt((0.67, 0.89), "multistep: decay points as fractions of the epochs", ge=0, le=1)
    gamma: float = _opt(0.1, "multistep: decay factor at each milestone", gt=0, le=1)
    clip_grad: float = _opt(10.0, "clip the global gradient norm to this (0: no clipping)", ge=0)


@dataclass(frozen=True)
class TrainConfig(options.Settings):
    """Everything a training run needs; ``model``, ``data`` and ``optim`` are sections in the YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init_from: str | None = _opt(None, "start from a trained detector (run dir, .pt, .safetensors, or torchvision:PATH); a different class count re-initializes the class head")
    freeze_bn: str = _opt("none", "keep BatchNorm statistics and affine parameters fixed in these layers (not with weights whose BatchNorm was folded, such as the shared TFLite-converted MobileNetV2: docs/training.md)", ("none", "backbone", "all"))
    sync_bn: bool = _opt(False, "synchronize BatchNorm statistics across processes under torchrun (GPU only)")
    epochs: int = _opt(120, "training epochs", ge=1, le=MAX_EPOCHS)
    batch_size: int = _opt(32, "global batch size (split evenly across torchrun processes)", ge=1, le=MAX_BATCH)
    device: str = _opt("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    seed: int = _opt(0, "seed for initialization, data order and augmentation", ge=0, le=MAX_SEED)
    amp: str = _opt("bf16", "mixed precision on CUDA (ignored on the CPU)", ("off", "bf16", "fp16"))
    channels_last: bool | None = _opt(None, "channels_last memory format for weights and activations", shown="on the CPU, where oneDNN's convolutions are about 1.6x faster with it; off on CUDA")
    ema: bool = _opt(True, "keep an exponential moving average of the weights for validation and best.pt")
    ema_decay: float = _opt(0.999, "EMA decay (warmed up from 0 over the first few thousand steps)", ge=0, lt=1)
    val_every: int = _opt(5, "validate every N epochs (and after the last one); 0 disables validation", ge=0, le=MAX_EPOCHS)
    best_metric: str = _opt("voc07_map50", "validation metric that selects best.pt")
    precise_bn_images: int = _opt(512, "recompute BatchNorm statistics on this many training images before validating and saving (0: off)", ge=0)
    max_bad_steps: int = _opt(20, "stop after this many consecutive steps with a non-finite loss or gradient", ge=1)
    log_every: int = _opt(10, "write a step record to metrics.jsonl every N steps", ge=1)
    stop_after: int = _opt(0, "stop after this many epochs in this invocation, as if interrupted; --resume continues (0: run to the end)", ge=0, le=MAX_EPOCHS)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists instead of tuples), for YAML and checkpoints."""
        return options.plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> TrainConfig:
        """Build from a nested dict; unknown keys and wrong types raise ``UserError`` naming ``source``."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            # Earlier versions kept these training-side settings in the model section.
            data, model = dict(data), dict(data["model"])
            for name in _MOVED_FROM_MODEL:
                if name in model:
                    data.setdefault(name, model.pop(name))
            data["model"] = model
        nested = {name: partial(options.from_dict, section) for name, section in SECTIONS.items()}
        nested["model"] = ModelConfig.from_dict
        return options.from_dict(cls, data, source, "", nested)

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with fields replaced by flat names (``lr=0.1``, ``size=160``, ``epochs=3``)."""
        data = self.to_dict()
        for name, value in overrides.items():
            section = _SECTION_OF.get(name)
            if section is None:
                raise KeyError(f"no configuration field {name!r}")
            (data[section] if section else data)[name] = value
        return TrainConfig.from_dict(data)

    def resolved(self) -> TrainConfig:
        """The model's architecture-dependent defaults filled in (:meth:`ModelConfig.resolved`), so the data
        side reads the same input size and normalization as the model; idempotent."""
        try:
            model = self.model.resolved()
        except ValueError as err:
            raise UserError(str(err)) from err
        return TrainConfig.from_dict({**self.to_dict(), "model": model.to_dict()})

    def save_yaml(self, path: str | Path, comment: str | None = None) -> None:
        """Write the configuration; ``comment`` (e.g. the derived recipe's reasons) goes on top as ``#`` lines."""
        from ssdlite.files import atomic_write

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if comment:
            text = "".join(f"# {line}\n" for line in comment.splitlines()) + text
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}
# Field name -> section name ("" for top-level fields); names are unique so flags can be flat.
_SECTION_OF: dict[str, str] = {f.name: s for s, c in SECTIONS.items() for f in fields(c)}
_SECTION_OF.update({f.name: "" for f in fields(TrainConfig) if f.name not in SECTIONS})
_MOVED_FROM_MODEL = ("init_from", "freeze_bn", "sync_bn")


def load_yaml(path: str | Path) -> TrainConfig:
    """Read a configuration file (sections ``model``, ``data``, ``optim`` and top-level fields)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such configuration file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from err
    return TrainConfig.from_dict(data, str(path))


def fields_in_yaml(path: str | Path) -> set[str]:
    """The configuration field names a YAML file sets (section keys and top-level keys, flattened)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    names = set()
    for key, value in data.items() if isinstance(data, dict) else ():
        names |= set(value) if key in SECTIONS and isinstance(value, dict) else {key}
    return names


def add_config_arguments(parser: argparse.ArgumentParser, derived: frozenset[str] = frozenset()) -> None:
    """One flag per configuration field (``--batch-size``, ``--lr``, ...); unset flags stay ``None``; the help of the
    fields in ``derived`` (``ssdlite train``'s recipe, ``engine.recipe.DERIVED``) says they are derived from the data.

    The model flags are :class:`ModelConfig`'s, exactly as every other command that builds a model has them.
    """
    options.add_arguments(parser.add_argument_group("training options"), TrainConfig, skip=tuple(SECTIONS), derived=derived)
    for section, cls in SECTIONS.items():
        options.add_arguments(parser.add_argument_group(f"{section} options"), cls, derived=derived)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration fields given on the command line."""
    return {name: getattr(args, name) for name in _SECTION_OF if getattr(args, name, None) is not None}
