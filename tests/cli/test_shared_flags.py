"""The flags of running a model have one definition: every command that has one of them has it with the same
default, help, type and choices as ``ssdlite.cli.options``' ``add_*`` function makes, or is listed below with why
its flag of that name is another setting.

This builds every sub-command's real parser, so a command that declares its own ``--device`` (with a default of
its own) fails here.
"""

from __future__ import annotations

import argparse

import pytest

from ssdlite.cli import build_parser
from ssdlite.cli import options as cli_options

#: flag -> the function that defines it.
SHARED = {
    "--weights": cli_options.add_weights,
    "--device": cli_options.add_device,
    "--threads": cli_options.add_threads,
    "--score-threshold": cli_options.add_score_threshold,
    "--batch-size": cli_options.add_batch_size,
}
#: The commands that run a trained model or train one: each has these shared flags.
EXPECTED = {
    ("predict",): {"--weights", "--device", "--threads", "--score-threshold", "--batch-size"},
    ("serve",): {"--weights", "--device", "--threads", "--score-threshold"},
    ("eval",): {"--weights", "--device", "--threads", "--batch-size"},
    ("benchmark",): {"--weights", "--threads"},
    ("demo",): {"--device"},
}
#: (command, flag) -> why the command's flag of that name is another setting than the shared one.
OTHER_SETTING = {
    # Measured: chess_pieces' validation split with /tmp/runs/chess_search: VOC07 mAP@0.5 0.969 keeping all, 0.948 at 0.3.
    ("eval", "--score-threshold"): "a cut before scoring, default none: mAP integrates over every score, a 0.3 cut lowers it",
    ("train", "--batch-size"): "the training batch (TrainConfig.batch_size)",
    ("demo", "--batch-size"): "the training batch (TrainConfig.batch_size, the demo's own default)",
    ("train", "--device"): "generated from TrainConfig.device (the same help); default 'not given' so --config applies",
    ("summary", "--weights"): "a trained PyTorch model only: summary describes its layers",
    ("doctor", "--weights"): "a trained PyTorch model only: the doctor runs its gradients",
    ("export", "--weights"): "a trained PyTorch model only: what every export starts from",
}
#: Commands whose --score-threshold is the model's postprocess field (tests/cli/test_model_flags.py covers it).
MODEL_FLAG_COMMANDS = {("summary",), ("train",), ("benchmark",), ("doctor",), ("anchors", "fit"), ("demo",)}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*path, name))


def _reference(flag: str) -> argparse.Action:
    parser = argparse.ArgumentParser()
    SHARED[flag](parser)
    return next(a for a in parser._actions if flag in a.option_strings)


def _same(action: argparse.Action, reference: argparse.Action) -> bool:
    keys = ("default", "help", "type", "choices", "nargs")
    return all(getattr(action, k) == getattr(reference, k) for k in keys)


def test_every_shared_flag_has_one_default_and_help_everywhere():
    seen: dict[tuple[str, ...], set[str]] = {}
    for path, parser in _leaves(build_parser()):
        command = " ".join(path)
        for action in parser._actions:
            flag = next((f for f in action.option_strings if f in SHARED), None)
            if flag is None:
                continue
            if _same(action, _reference(flag)):
                seen.setdefault(path, set()).add(flag)
                continue
            model_flag = flag == "--score-threshold" and path in MODEL_FLAG_COMMANDS
            assert model_flag or (command, flag) in OTHER_SETTING, (
                f"`ssdlite {command}` declares its own {flag} (default {action.default!r}, help {action.help!r}): "
                f"use ssdlite.cli.options.{SHARED[flag].__name__}"
            )
    for path, flags in EXPECTED.items():
        assert seen.get(path, set()) >= flags, (path, flags - seen.get(path, set()))


def test_device_defaults_to_auto_and_auto_is_understood():
    """`auto` (CUDA when available) is the default, and every command's model loading reads it."""
    from ssdlite.engine.distributed import resolve_device

    assert _reference("--device").default == "auto"
    assert resolve_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("flag", ["--threads", "--score-threshold", "--batch-size"])
def test_a_shared_flag_refuses_a_bad_value_the_same_way(flag, capsys):
    messages = set()
    for path in [p for p, flags in EXPECTED.items() if flag in flags]:
        parser = build_parser()
        with pytest.raises(SystemExit):
            parser.parse_args([*path, "--weights", "w", "x", flag, "-1"] if path == ("predict",) else [*path, "--weights", "w", flag, "-1"])
        messages.add(capsys.readouterr().err.strip().splitlines()[-1].split(": error: ", 1)[1])
    assert len(messages) == 1, messages
