"""Every command that builds a model has every model flag, with the same name, default and help.

The flags are generated from :class:`ssdlite.models.config.ModelConfig`; this walks the real parser
of each command, so a command that grows its own ``--size`` (or loses ``--aspect-ratios``) fails here.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from ssdlite.cli import build_parser
from ssdlite.cli.options import model_config_from_args
from ssdlite.engine.recipe import DERIVED
from ssdlite.models.config import ModelConfig
from ssdlite.models.options import flag_name, help_text

#: The commands that build a model, as paths through the sub-command parsers.
MODEL_COMMANDS = [("train",), ("summary",), ("benchmark",), ("doctor",), ("anchors", "fit"), ("demo",)]
#: Flags a command cannot parse without.
REQUIRED = {("doctor",): ["--data", "d"], ("anchors", "fit"): ["--data", "d"]}


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions}


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=lambda p: " ".join(p))
def test_every_model_flag_has_one_name_default_and_help(path):
    actions = _actions_by_dest(_subparser(path))
    for f in fields(ModelConfig):
        assert f.name in actions, f"`ssdlite {' '.join(path)}` has no {flag_name(f.name)}"
        action = actions[f.name]
        assert flag_name(f.name) in action.option_strings, (path, f.name, action.option_strings)
        # Unset means "not given": the command's starting point (defaults, --config, a preset) applies.
        assert action.default is None, (path, f.name, action.default)
        # train's recipe derives some of them: their help says so instead of the default (engine/recipe.py).
        assert action.help == help_text(f, path == ("train",) and f.name in DERIVED), (path, f.name)
        assert action.choices == f.metadata.get("choices"), (path, f.name)


def test_the_flags_parse_to_the_same_configuration_everywhere():
    argv = ["--arch", "mobilenet_v3_small", "--size", "192", "--no-reduce-lowest", "--aspect-ratios", "2", "/", "2", "3",
            "/", "2", "/", "2", "/", "2", "/", "2", "--clip-boxes", "image", "--min-negatives", "0", "--neck", "fpn"]
    parsed = set()
    for path in MODEL_COMMANDS:
        args = _subparser(path).parse_args(REQUIRED.get(path, []) + argv)
        parsed.add(model_config_from_args(args))
    assert len(parsed) == 1
    (config,) = parsed
    assert config.arch == "mobilenet_v3_small" and config.size == 192 and config.reduce_lowest is False
    assert config.aspect_ratios == ((2.0,), (2.0, 3.0), (2.0,), (2.0,), (2.0,), (2.0,))
    assert (config.clip_boxes, config.min_negatives, config.neck) == ("image", 0, "fpn")


def test_a_wrong_choice_is_refused_by_every_command(capsys):
    for path in MODEL_COMMANDS:
        with pytest.raises(SystemExit):
            _subparser(path).parse_args(REQUIRED.get(path, []) + ["--head", "tiny"])
        assert "invalid choice: 'tiny'" in capsys.readouterr().err
