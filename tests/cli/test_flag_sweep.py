"""Every sub-command, every numeric flag its ``--help`` lists: 0, a negative and a huge value end cleanly (issue 34).

Each command runs in this process (``ssdlite.cli.main``, stderr captured) with otherwise minimal valid arguments on
a tiny dataset and model made here. A clean end is an exit code of 0, 1 or 2, a message on stderr when it is not 0,
and no exception escaping ``main`` (what the program would print as a traceback). Out-of-range values are refused
by the parser before any work (that is what keeps this fast), each in its own run; the values a command accepts
run it for real, together (one run with every accepted 0, one with every accepted huge value), except those listed
in :data:`NOT_RUN`, each with why it is valid and why it is not run here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import fields
from pathlib import Path

import pytest

import ssdlite.cli as cli
from ssdlite.models.config import ModelConfig
from ssdlite.models.options import help_text

VALUES = ("0", "-1", str(10**12))
#: The model flags' help texts (every command that builds a model has them all, tests/cli/test_model_flags.py);
#: a command's own flag of the same name (predict's --score-threshold) has its own help.
MODEL_HELP = {help_text(f) for f in fields(ModelConfig)}
#: Where an accepted model-flag value is run: ``summary`` builds the model, ``train`` also trains it (loss, matching,
#: postprocess). The other model commands parse the same generated flags into the same ModelConfig
#: (test_model_flags.py), so there an accepted value is only parsed.
MODEL_FLAGS_RUN_IN = {("summary",), ("train",)}
#: Accepted values not run here (command, flag or None for all, value or None for all): why each is valid and why
#: it is not run. Every value of ``export`` and ``quantize`` is refused by the parser (their files need not exist).
NOT_RUN = {
    ("demo", None, None): "0 images to generate or draw, seed 0 and 0 workers are valid; the demo trains and evaluates",
}


def _subparsers(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` of every leaf sub-command (``("data", "check")``, ``("train",)``, ...)."""
    subs = _subparsers(parser)
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _commands(sub, path + (name,))


PARSER = cli.build_parser()
COMMANDS = dict(_commands(PARSER))


def _numeric_flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The flags of ``--help`` that take numbers: ``type=int``/``float``, a checked number type, per-level lists."""
    return [
        a for a in parser._actions
        if a.option_strings and a.help != argparse.SUPPRESS
        and (getattr(a.type, "kind", a.type) in (int, float) or type(a).__name__ == "_PerLevel")
    ]


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its values."""
    out, skipping = [], False
    for token in argv:
        if skipping and not token.startswith("--"):
            continue
        skipping = token == flag
        if not skipping:
            out.append(token)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from ssdlite.data import SHAPES, write_synthetic
    from ssdlite.models import create_model
    from ssdlite.models.io import save_safetensors

    root = tmp_path_factory.mktemp("sweep")
    data = write_synthetic(root / "voc", num_train=4, num_val=2, size=64, seed=0)
    weights = root / "model.safetensors"
    save_safetensors(create_model(len(SHAPES) + 1, size=64, width_mult=0.35), weights, classes=list(SHAPES))
    return {"root": root, "data": data, "weights": weights}


def _base(path: tuple[str, ...], files: dict[str, Path]) -> list[str]:
    """Minimal valid arguments of each command, small and fast (64 px, width 0.35, one epoch, no workers)."""
    root, data, weights = files["root"], str(files["data"]), str(files["weights"])
    model = ["--size", "64", "--width-mult", "0.35", "--backbone-weights", "none"]
    return {
        ("summary",): model,
        ("data", "check"): [data],
        ("data", "synth"): [str(root / "synth"), "--num-train", "2", "--num-val", "1", "--size", "64", "--overwrite"],
        ("train",): ["--data", data, "--out", str(root / "run"), *model, "--epochs", "1", "--batch-size", "2", "--workers", "0",
                     "--val-every", "0", "--precise-bn-images", "0", "--min-scale", "0.2", "--augment", "none", "--no-ema"],
        ("eval",): ["--weights", weights, "--data", data, "--workers", "0", "--no-progress"],
        ("predict",): [str(Path(data) / "JPEGImages"), "--weights", weights, "--out", str(root / "predicted"), "--no-draw"],
        ("serve",): ["--weights", weights],
        ("export",): ["--weights", weights, "--out", str(root / "model.onnx")],
        ("quantize",): ["--onnx", str(root / "model.onnx"), "--calib", data, "--out", str(root / "int8.onnx")],
        ("benchmark",): [*model, "--iters", "1", "--warmup", "0"],
        ("doctor",): ["--data", data, *model, "--overfit-steps", "1", "--out", str(root / "doctor")],
        ("anchors", "fit"): ["--data", data, *model, "--out", str(root / "anchors.yaml")],
        ("convert",): [str(root / "torchvision.pth"), "--out", str(root / "converted.safetensors")],
        ("demo",): ["--out", str(root / "demo"), "--num-train", "4", "--num-val", "2", "--image-size", "64", "--epochs", "1",
                    "--batch-size", "2", "--workers", "0", "--draw", "1", *model],
    }[path]


def _accepted(action: argparse.Action, value: str) -> bool:
    """Whether the flag's own type takes ``value`` (a per-level list reads its numbers with ``number``)."""
    try:
        (getattr(action, "number", None) or action.type or float)(value)
    except (ValueError, argparse.ArgumentTypeError):
        return False
    return True


def _not_run(path: tuple[str, ...], action: argparse.Action, value: str) -> bool:
    flag = action.option_strings[0]
    listed = any(c == " ".join(path) and f in (None, flag) and v in (None, value) for c, f, v in NOT_RUN)
    return listed or (action.help in MODEL_HELP and path not in MODEL_FLAGS_RUN_IN)


def _run(argv: list[str]) -> tuple[object, str]:
    """``(exit code, or the exception that escaped main; stderr)``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit:
            code = exit.code
        except Exception as exc:  # noqa: BLE001 - what the program would print as a traceback
            code = exc
    return code, err.getvalue()


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_numeric_flag_with_zero_a_negative_and_a_huge_value_ends_cleanly(path, files, monkeypatch):
    import ssdlite.serve.server

    # One parser for all the runs (main builds it for each, importing every command); parse_args keeps no state.
    monkeypatch.setattr(cli, "build_parser", lambda: PARSER)
    # serve: everything up to listening (model, app, warm-up) runs; the server itself would never return.
    monkeypatch.setattr(ssdlite.serve.server, "serve_forever", lambda *args, **kwargs: None)
    base, runs = _base(path, files), []
    accepted: dict[str, list[tuple[str, list[str]]]] = {value: [] for value in VALUES}
    for action in _numeric_flags(COMMANDS[path]):
        flag = action.option_strings[0]
        for value in VALUES:
            values = [value] * (action.nargs if isinstance(action.nargs, int) else 1)
            if not _accepted(action, value):
                runs.append([*path, *_without(base, flag), flag, *values])  # refused alone: each error is its own
            elif not _not_run(path, action, value):
                accepted[value].append((flag, values))
    failures = []

    def run(argv: list[str]) -> object:
        code, err = _run(argv)
        if isinstance(code, BaseException) or code not in (0, 1, 2) or "Traceback" in err or (code != 0 and not err.strip()):
            failures.append(f"ssdlite {' '.join(argv)}: {code!r}\n{err[-2000:]}")
        return code

    for argv in runs:
        run(argv)
    # The accepted values run together, one run per value (all the zeros, all the huge values): a run is seconds. When
    # the command refuses the combination (a check of its own in the handler), each value runs alone.
    for pairs in accepted.values():
        combined = list(base)
        for flag, values in pairs:
            combined = [*_without(combined, flag), flag, *values]
        if pairs and run([*path, *combined]) != 0 and len(pairs) > 1:
            for flag, values in pairs:
                run([*path, *_without(base, flag), flag, *values])
    assert not failures, "\n\n".join(failures)


def test_the_sweep_finds_the_numeric_flags_of_every_kind():
    """Plain ``type=int``, checked numbers, generated fields (fixed-length lists too) and per-level lists."""
    names = {path: {a.option_strings[0] for a in _numeric_flags(parser)} for path, parser in COMMANDS.items()}
    assert {"--lr", "--epochs", "--workers", "--image-mean", "--aspect-ratios", "--time-budget"} <= names[("train",)]
    assert {"--port", "--max-batch-size", "--threads"} <= names[("serve",)]
    assert {"--num-train", "--seed"} <= names[("data", "synth")] and not names[("data", "check")]
