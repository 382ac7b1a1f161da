"""The runtime table (:mod:`ssdlite.deploy.runtimes`) is what every command offers and what each runtime module
implements: adding a runtime is one module and one row, and this file says what else is missing."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from ssdlite.cli import _runtime, build_parser
from ssdlite.deploy import runtimes
from ssdlite.errors import UserError


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def choices(parser: argparse.ArgumentParser, flag: str) -> tuple[str, ...] | None:
    action = next((a for a in parser._actions if flag in a.option_strings), None)
    return None if action is None or action.choices is None else tuple(action.choices)


def test_every_command_offers_exactly_the_tables_runtimes():
    parsers = command_parsers()
    assert choices(parsers["export"], "--format") == runtimes.choices(exports=True)
    for command in ("predict", "serve", "eval"):
        assert choices(parsers[command], "--backend") == runtimes.choices(backend=True), command
    assert choices(parsers["benchmark"], "--backend") == runtimes.choices(backend=True) + runtimes.int8_choices()
    # The choices are the rows (then their older spellings), nothing typed beside them.
    assert runtimes.choices()[: len(runtimes.RUNTIMES)] == tuple(r.name for r in runtimes.RUNTIMES)
    assert "web" in runtimes.choices(exports=True) and "web" not in runtimes.choices(backend=True)
    assert set(runtimes.choices(exports=True)) == {n for r in runtimes.RUNTIMES if r.exports for n in (r.name, *r.aliases)}
    # Every command that runs a runtime says how it resolves it, and the torch-free pre-parse knows it.
    resolving = {name for name, p in parsers.items() if p.get_default("runtime_of") is not None}
    with_flag = {name for name, p in parsers.items() if choices(p, "--backend") or name == "export"}
    assert resolving == set(_runtime.RUNTIME_FLAGS) and with_flag <= resolving


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "a.jpg", "--weights", "m.xml", "--out", "o"],
        ["predict", "a.jpg", "--weights", "run", "--out", "o"],
        ["predict", "a.jpg", "--weights", "m.onnx", "--out", "o", "--backend", "openvino"],
        ["serve", "--weights", "m.tflite"],
        ["eval", "--weights", "m.pte", "--data", "d"],
        ["eval", "--weights", "m.pt", "--data", "d", "--backend", "torchscript"],
        ["benchmark", "--backend", "onnxruntime-int8"],
        ["benchmark", "--weights", "m.xml", "--iters", "3"],
        ["export", "--weights", "run", "--out", "m.onnx"],
        ["export", "--weights", "run", "--format", "openvino", "--out", "m.xml"],
        ["quantize", "--onnx", "m.onnx", "--calib", "d", "--out", "q.onnx"],
    ],
)
def test_the_torch_free_pre_parse_resolves_the_runtime_the_command_runs(argv):
    args = build_parser().parse_args(argv)
    assert _runtime.runtime_of_argv(argv) is args.runtime_of(args)


def test_commands_without_a_runtime_resolve_none():
    assert _runtime.runtime_of_argv(["train", "--data", "d", "--out", "m.xml"]) is None
    assert _runtime.runtime_of_argv(["data", "check", "d", "--format", "voc"]) is None
    assert _runtime.runtime_of_argv(["predict", "--backend", "nonsense"]) is None  # the full parser reports it


def test_the_old_backend_name_still_selects_onnx():
    """``onnxruntime`` was the backend's name for the files ``--format onnx`` writes: one vocabulary now, the old
    spelling kept as an alias everywhere a runtime is named."""
    assert runtimes.get("onnxruntime") is runtimes.get("onnx")
    assert runtimes.get_int8("onnxruntime-int8") == (runtimes.get("onnx"), True)
    args = build_parser().parse_args(["predict", "a.jpg", "--weights", "m.pte", "--out", "o", "--backend", "onnxruntime"])
    assert args.runtime_of(args).name == "onnx"
    assert build_parser().parse_args(["export", "--weights", "r", "--format", "onnxruntime", "--out", "m.onnx"]).format == "onnxruntime"
    with pytest.raises(UserError, match="unknown runtime 'onnxrt'; choose one of torch, onnx"):
        runtimes.get("onnxrt")


def test_each_row_has_its_module_and_its_files():
    for row in runtimes.RUNTIMES:
        module = runtimes.implementation(row.name)
        assert module.RUNTIME is row and (getattr(module, "Backend", None) is not None) == row.backend, row.name
        assert callable(getattr(module, "export", None)) == row.exports, row.name
        assert row.shapes in ("static", "dynamic") and row.output in ("file", "folder")
        assert bool(row.suffixes) == (row.output == "file") and all(s.startswith(".") for s in row.suffixes)
        if row.suffixes and row is not runtimes.DEFAULT:
            assert runtimes.for_file(f"model{row.suffixes[0]}") is row  # its usual suffix finds it
    assert runtimes.for_file("runs/raccoon") is runtimes.DEFAULT and runtimes.for_file("m.PT") is runtimes.DEFAULT
    assert set(runtimes.names(shapes="static", backend=True)) == {"executorch", "tflite", "openvino"}


def test_static_runtimes_share_one_base():
    from ssdlite.deploy.runtimes.static import StaticBackend, StaticRuntime

    for row in runtimes.rows(shapes="static", backend=True):
        module = runtimes.implementation(row.name)
        assert issubclass(module.Backend, StaticBackend) and module.Backend.runtime is row
        runtime = module.export.__self__
        assert isinstance(runtime, StaticRuntime) and runtime.runtime is row


def test_the_table_and_the_pre_parse_import_no_torch():
    code = ("import sys; from ssdlite.cli._runtime import runtime_of_argv; "
            "print(runtime_of_argv(['predict', 'a.jpg', '--weights', 'm.xml']).name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["openvino", "False"]


def test_each_rows_extra_is_in_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for row in runtimes.RUNTIMES:
        assert row.extra is None or extras.get(row.extra), f"{row.name}: no extra {row.extra!r} in pyproject.toml"
