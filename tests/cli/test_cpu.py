"""The CPU set-up of the `ssdlite` program: tcmalloc preloaded by re-executing, huge pages for PyTorch's
allocator, channels_last on the CPU; each with a clean fallback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ssdlite.cli import _cpu
from ssdlite.models.memory_format import place_model, uses_channels_last

PROBE = (
    "import os, sys\n"
    "from ssdlite.cli._cpu import relaunch_for_speed\n"
    "relaunch_for_speed()\n"
    "maps = open('/proc/self/maps').read()\n"
    "print('tcmalloc' in maps, os.environ.get('THP_MEM_ALLOC_ENABLE'), os.environ.get('SSDLITE_RELAUNCHED'), 'torch' in sys.modules)\n"
)


def clean_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "THP_MEM_ALLOC_ENABLE", _cpu.RELAUNCHED, _cpu.SWITCH)}
    return {**env, **extra}


def test_tuned_environment_preloads_tcmalloc_once(monkeypatch):
    monkeypatch.setattr(_cpu, "find_tcmalloc", lambda: "libtcmalloc_minimal.so.4")
    monkeypatch.setattr(_cpu.sys, "platform", "linux")
    env, relaunch = _cpu.tuned_environment({"LD_PRELOAD": "libfoo.so"})
    assert relaunch and env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 libfoo.so"
    assert env["THP_MEM_ALLOC_ENABLE"] == "1" and env["TCMALLOC_RELEASE_RATE"] == "0" and env[_cpu.RELAUNCHED] == "1"
    assert _cpu.tuned_environment(env) == ({**env}, False)  # the re-executed process does not re-execute
    assert not _cpu.tuned_environment({"LD_PRELOAD": "/opt/libjemalloc.so.2"})[1]  # the user's own allocator stays
    assert _cpu.tuned_environment({"THP_MEM_ALLOC_ENABLE": "0"})[0]["THP_MEM_ALLOC_ENABLE"] == "0"


def test_without_tcmalloc_only_huge_pages_are_set(monkeypatch):
    monkeypatch.setattr(_cpu, "find_tcmalloc", lambda: None)
    env, relaunch = _cpu.tuned_environment({})
    assert not relaunch and env == {"THP_MEM_ALLOC_ENABLE": "1"}


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD re-execution is Linux only")
def test_the_program_runs_with_tcmalloc_loaded_or_falls_back():
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean_env(), capture_output=True, text=True, check=True).stdout.split()
    if _cpu.find_tcmalloc() is None:
        assert out == ["False", "1", "None", "False"]  # no tcmalloc on this machine: huge pages only, no re-execution
    else:
        assert out == ["True", "1", "1", "False"]  # re-executed before PyTorch was imported
    off = subprocess.run([sys.executable, "-c", PROBE], env=clean_env(SSDLITE_CPU_TUNING="0"), capture_output=True, text=True, check=True)
    assert off.stdout.split() == ["False", "None", "None", "False"]


def test_importing_ssdlite_and_its_cli_does_not_import_torch():
    """The re-execution must come before PyTorch loads, so the package and the dispatcher import it lazily."""
    code = "import sys, ssdlite, ssdlite.cli; print('torch' in sys.modules, ssdlite.create_model.__module__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "ssdlite.models.factory", "True"]


def test_channels_last_on_the_cpu_unless_told_otherwise():
    assert uses_channels_last(None, "cpu") and not uses_channels_last(None, "cuda")
    assert not uses_channels_last(False, "cpu") and uses_channels_last(True, "cuda")
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    assert place_model(conv, "cpu")[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert place_model(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), "cpu", False)[0].weight.is_contiguous()


def test_openvino_commands_keep_the_system_allocator():
    """OpenVINO's CPU plugin aborts ("double free or corruption") under a preloaded tcmalloc: its row asks for the
    system allocator, and the decision is the runtime the parsed command resolves, not a word in the command line."""
    assert _cpu.keeps_system_allocator(["export", "--weights", "run", "--format", "openvino", "--out", "m.xml"])
    assert _cpu.keeps_system_allocator(["predict", "img.jpg", "--weights", "model.xml", "--out", "o"])
    assert _cpu.keeps_system_allocator(["serve", "--weights", "model.onnx", "--backend", "openvino"])
    assert not _cpu.keeps_system_allocator(["predict", "img.jpg", "--weights", "model.xml", "--backend", "onnx", "--out", "o"])
    assert not _cpu.keeps_system_allocator(["train", "--data", "openvino", "--out", "runs/x.xml"])  # names, not runtimes
    assert not _cpu.keeps_system_allocator(["export", "--weights", "openvino.xml", "--out", "m.onnx"])
