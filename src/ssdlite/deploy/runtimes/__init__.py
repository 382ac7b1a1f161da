"""The runtimes: one row each, read by every command, and one module each that exports, loads and runs its files.

This module is the table and nothing else: it imports neither PyTorch nor a runtime, so the command line reads it
to build its choices, its help and its suffix checks, and to choose the allocator before PyTorch loads
(:mod:`ssdlite.cli._cpu`). A row names the module that implements the runtime (imported by :func:`implementation`
when a command needs it); that module defines ``export(model, path, classes, options)`` (when the row exports)
and ``Backend`` (when it loads), the class :class:`~ssdlite.deploy.predictor.Predictor` runs.

One vocabulary: a row's ``name`` is both ``ssdlite export --format NAME`` and ``--backend NAME`` of predict, eval,
serve and benchmark. ``aliases`` keep older spellings working (``onnxruntime`` was the backend's name for
``onnx`` files).

Adding a runtime: write ``runtimes/<name>.py`` (a static-shape one subclasses
:class:`ssdlite.deploy.runtimes.static.StaticRuntime`), add its row below and its pip extra to pyproject.toml;
``tests/deploy/test_runtimes.py`` checks every command's choices against the rows and runs each row's module.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ssdlite.errors import UserError


@dataclass(frozen=True)
class Runtime:
    """One runtime: its files, its package, and what its exports accept."""

    name: str  # --format and --backend
    title: str  # for messages: "ONNX Runtime", "LiteRT"
    module: str  # its module in this package (export, Backend), imported by name when needed
    suffixes: tuple[str, ...]  # its files' suffixes; an export writes one of them (the first is the usual one)
    extra: str | None  # `pip install 'ssdlite[EXTRA]'`; None: the core install has it
    shapes: str  # "dynamic" (any batch) or "static" (fixed batch and sizes, NMS in the file)
    int8: str | None  # how to get an INT8 file of this runtime, None where there is none
    system_allocator: bool = False  # its library aborts under a preloaded tcmalloc: keep glibc's malloc
    exports: bool = True  # `ssdlite export --format NAME` writes it
    from_weights: bool = False  # its backend also runs a weights file (converted in memory): benchmark needs no file
    options: tuple[str, ...] = ()  # the export flags only it takes (the others: --weights, --out, --images)
    aliases: tuple[str, ...] = ()  # older names that still select it
    backend: bool = True  # predict, eval, serve and benchmark run its files (--backend NAME)
    output: str = "file"  # what export's --out names: "file" (with one of `suffixes`) or "folder"


QUANTIZE = "ssdlite quantize"  # the INT8 path that also runs in memory (ssdlite benchmark --backend NAME-int8)
EXPORT_INT8 = "ssdlite export --int8 --calib DATA"  # the static runtimes' INT8 path: quantized while exported
STATIC_OPTIONS = ("--int8", "--calib", "--val", "--batch", "--candidates")  # (and --calib-split etc., which refine these)

RUNTIMES: tuple[Runtime, ...] = (
    Runtime("torch", "PyTorch", "pytorch", (".safetensors", ".pt", ".pth"), None, "dynamic", None,
            exports=False, from_weights=True),
    Runtime("onnx", "ONNX Runtime", "onnx", (".onnx",), "export", "dynamic", QUANTIZE,
            from_weights=True, options=("--with-nms", "--dynamic-batch", "--opset"), aliases=("onnxruntime",)),
    Runtime("torchscript", "TorchScript", "torchscript", (".torchscript", ".pt", ".pth"), None,
            "dynamic", None),
    Runtime("executorch", "ExecuTorch", "executorch", (".pte",), "executorch", "static", EXPORT_INT8,
            options=STATIC_OPTIONS),
    Runtime("tflite", "LiteRT", "litert", (".tflite",), "tflite", "static", EXPORT_INT8,
            options=STATIC_OPTIONS + ("--input-type",)),
    Runtime("openvino", "OpenVINO", "openvino", (".xml",), "openvino", "static", EXPORT_INT8,
            system_allocator=True, options=STATIC_OPTIONS + ("--layout",)),
    # A folder with a page that runs the LiteRT file in the browser (MediaPipe Tasks, WebAssembly); batch 1.
    Runtime("web", "MediaPipe web page", "web", (), "tflite", "static", EXPORT_INT8,
            options=("--int8", "--calib", "--candidates", "--input-type", "--mediapipe"), backend=False, output="folder"),
)
DEFAULT = RUNTIMES[0]  # weights files and run directories
INT8_SUFFIX = "-int8"  # `benchmark --backend onnx-int8`: the runtime's INT8 path (ssdlite quantize's) applied in memory


def rows(**where) -> tuple[Runtime, ...]:
    """The rows whose fields equal ``where``'s values (``rows(exports=True, shapes="static")``)."""
    return tuple(r for r in RUNTIMES if all(getattr(r, k) == v for k, v in where.items()))


def names(**where) -> tuple[str, ...]:
    """The names of :func:`rows`."""
    return tuple(r.name for r in rows(**where))


def choices(**where) -> tuple[str, ...]:
    """What a ``--format`` (``exports=True``) / ``--backend`` flag accepts: the names, then the older spellings."""
    chosen = rows(**where)
    return tuple(r.name for r in chosen) + tuple(a for r in chosen for a in r.aliases)


def int8_choices() -> tuple[str, ...]:
    """``NAME-int8`` (and older spellings) of the runtimes whose INT8 path runs in memory: benchmark's extra choices."""
    quantized = [r for r in RUNTIMES if r.int8 == QUANTIZE]
    return tuple(n + INT8_SUFFIX for r in quantized for n in (r.name, *r.aliases))


def get_int8(name: str) -> tuple[Runtime, bool]:
    """``(row, INT8?)`` of a benchmark choice: ``NAME`` or ``NAME-int8``."""
    if name.endswith(INT8_SUFFIX) and name in int8_choices():
        return get(name.removesuffix(INT8_SUFFIX)), True
    return get(name), False


def get(name: str) -> Runtime:
    """The row called ``name`` (or by one of its aliases); an unknown name is a UserError listing the rows."""
    for row in RUNTIMES:
        if name == row.name or name in row.aliases:
            return row
    raise UserError(f"unknown runtime {name!r}; choose one of {', '.join(names())}")


def for_file(path: str | os.PathLike) -> Runtime:
    """The runtime that reads ``path`` by its suffix: the first row listing it, the default (torch: weights files,
    run directories) for anything else."""
    suffix = Path(path).suffix.lower()
    return next((r for r in RUNTIMES if suffix in r.suffixes), DEFAULT)


def chosen(name: str | None, weights: str | os.PathLike | None) -> Runtime:
    """The runtime a command runs: ``--backend NAME`` (or ``NAME-int8``) when given, else the one that reads ``weights``."""
    return get_int8(name)[0] if name else for_file(weights) if weights else DEFAULT


def implementation(name: str) -> ModuleType:
    """The module of runtime ``name`` (imported now: it may import PyTorch and the runtime's package lazily)."""
    return importlib.import_module(f"{__name__}.{get(name).module}")


def exported_suffixes() -> tuple[str, ...]:
    """The usual suffix of each runtime's exported file that a backend runs: ``(".onnx", ".torchscript", ...)``,
    for help texts."""
    return tuple(r.suffixes[0] for r in rows(exports=True, backend=True))


def described(rows: tuple[Runtime, ...] = RUNTIMES) -> str:
    """``.onnx onnx, .pte executorch, ...``: the suffix -> runtime part of help texts (rows whose files have one)."""
    return ", ".join(f"{r.suffixes[0]} {r.name}" for r in rows if r is not DEFAULT and r.suffixes)
