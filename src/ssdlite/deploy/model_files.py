"""Checks of an exported model file before a runtime's native loader sees it.

The runtimes' loaders are C++: given a file that is truncated, empty, of another format or random bytes,
some raise, but some abort the whole interpreter (ExecuTorch's ``load_program`` on random bytes ends in
SIGABRT), which no ``try`` can catch. So every file is first checked here, in Python, against what its
suffix promises, and a bad one is a :class:`~ssdlite.errors.UserError` naming the file and the problem:

- ``.onnx``: the protobuf parses (``onnx.load`` without external data) into a graph, and ssdlite's
  ``metadata_props`` (``ssdlite_config``, ``classes``), when present, are JSON;
- ``.tflite``: the FlatBuffer file identifier ``TFL3`` at bytes 4..8, a root offset inside the file, and
  every buffer of the model (read with the TFLite schema of ``ai-edge-litert``) inside the file; a file of
  ssdlite's MediaPipe layout (``"layout": "mediapipe"`` in its ``ssdlite_metadata``) also ends in a sound zip
  archive holding ``labels.txt`` (the labels MediaPipe reads; a cut copy loses the archive's directory);
- ``.pte``: ExecuTorch's FlatBuffer identifier ``ET`` + two characters at bytes 4..8 and its extended
  header (magic ``eh00`` at byte 8: program size, segment offset and size) within the file's size
  (``executorch/exir/_serialize/_program.py``, ``_ExtendedHeader``);
- ``.xml`` (OpenVINO IR): parses with defusedxml as a ``<net>``, its ``.bin`` is beside it with exactly the
  bytes its ``Const`` layers address, and the ``rt_info`` metadata, when present, is JSON;
- ``.pt``/``.pth``/``.torchscript``: a zip archive whose central directory reads (PyTorch's format since
  1.6; a truncated copy loses it), or a legacy pickle (``torch.save``'s old format).

Other paths (run directories, ``.safetensors``) are left to their own readers, which raise clean errors.
Torch-free: the checks import only the standard library, defusedxml and, for ``.onnx``/``.tflite``, the
format's own reader package when it is installed.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from ssdlite.errors import UserError

#: ExecuTorch's extended header (``_ExtendedHeader``): magic, header length, program size, segment offset, segment size.
_PTE_HEADER = struct.Struct("<4sIQQQ")
_PTE_HEADER_AT = 8
_PTE_MIN_HEADER_LENGTH = 24  # magic + length + program size + segment offset (``_ExtendedHeader.MINIMUM_LENGTH``)


class ModelFileError(UserError):
    """An exported model file that cannot be given to its runtime: the message names the file and why."""


def _fail(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"{path}: {problem}")


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _check_onnx(path: Path, size: int) -> None:
    try:
        import onnx
    except ImportError:  # onnxruntime alone reports a bad protobuf cleanly; parsing here is the extra safety
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and whatever a foreign file makes the parser hit
        raise _fail(path, f"not an ONNX model: its protobuf does not parse ({type(err).__name__}: {err})") from err
    if not model.graph.node:
        raise _fail(path, "not an ONNX model: it parses but holds no graph")
    meta = {entry.key: entry.value for entry in model.metadata_props}
    for key in ("ssdlite_config", "classes"):
        if key in meta:
            try:
                json.loads(meta[key])
            except ValueError as err:
                raise _fail(path, f"its ssdlite metadata '{key}' is not JSON ({err}); export it again with 'ssdlite export'") from err


def _check_tflite(path: Path, size: int) -> None:
    head = _head(path, 8)
    if size < 8 or head[4:8] != b"TFL3":
        raise _fail(path, f"not a LiteRT (TFLite) model: no FlatBuffer identifier 'TFL3' at bytes 4..8 (found {head[4:8]!r})")
    if struct.unpack_from("<I", head)[0] >= size:
        raise _fail(path, f"LiteRT model cut short: its root table lies past the end of the file ({size} bytes)")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # without the runtime there is nothing to protect
        return
    data = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.BuffersLength()):
            buffer = model.Buffers(i)
            offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
            if offset > 1:  # a buffer stored after the flatbuffer (models over 2 GB)
                if offset + buffer.Size() > size:
                    raise ValueError(f"buffer {i} ends at byte {offset + buffer.Size()}")
            elif buffer.DataLength():
                buffer.DataAsNumpy()  # numpy refuses a vector that runs past the end
        for s in range(model.SubgraphsLength()):
            subgraph = model.Subgraphs(s)
            for t in range(subgraph.TensorsLength()):
                if subgraph.Tensors(t).Buffer() >= model.BuffersLength():
                    raise ValueError(f"tensor {t} of subgraph {s} names buffer {subgraph.Tensors(t).Buffer()} of {model.BuffersLength()}")
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == b"ssdlite_metadata" and entry.Buffer() < model.BuffersLength():
                meta = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
                if isinstance(meta, dict) and meta.get("layout") == "mediapipe":
                    _check_packed_labels(data)
    except Exception as err:  # struct.error, IndexError, ValueError: whatever a cut or corrupt flatbuffer makes the reader hit
        raise _fail(path, f"LiteRT model is corrupt or cut short ({size} bytes): {err}") from err


def _check_packed_labels(data: bytes) -> None:
    """The zip archive after a MediaPipe-layout flatbuffer reads whole and holds ``labels.txt``
    (:func:`ssdlite.deploy.runtimes.litert.with_associated_files`); raises what zipfile raises, or ValueError."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        broken = archive.testzip()
        if broken is not None or "labels.txt" not in archive.namelist():
            raise ValueError(f"its packed labels archive is damaged ({broken or 'no labels.txt'})")


def _check_pte(path: Path, size: int) -> None:
    head = _head(path, _PTE_HEADER_AT + _PTE_HEADER.size)
    identifier = head[4:8]
    if len(head) < 8 or identifier[:2] != b"ET" or not identifier[2:].isalnum():
        raise _fail(path, f"not an ExecuTorch program: no FlatBuffer identifier 'ET..' at bytes 4..8 (found {identifier!r})")
    if len(head) < _PTE_HEADER_AT + _PTE_HEADER.size:
        raise _fail(path, f"ExecuTorch program cut short: {size} bytes")
    magic, length, program_size, segment_offset, segment_size = _PTE_HEADER.unpack_from(head, _PTE_HEADER_AT)
    if magic != b"eh00" or length < _PTE_MIN_HEADER_LENGTH:
        raise _fail(path, "ExecuTorch program without its extended header ('eh00' at byte 8): corrupt, or not written by ExecuTorch's serializer")
    root = struct.unpack_from("<I", head)[0]
    if length <= _PTE_MIN_HEADER_LENGTH:
        segment_size = 0  # an older header without the segment size
    end = max(program_size, segment_offset + segment_size if segment_offset else 0)
    if root >= program_size or end > size:
        raise _fail(path, f"ExecuTorch program cut short or corrupt: its header says {end} bytes, the file has {size}")


def _check_openvino(path: Path, size: int) -> None:
    from defusedxml import ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except Exception as err:  # ParseError, and defusedxml's refusals of entities
        raise _fail(path, f"not an OpenVINO model: the XML does not parse ({type(err).__name__}: {err})") from err
    if root.tag != "net":
        raise _fail(path, f"not an OpenVINO model: its root element is <{root.tag}>, not <net>")
    weights = path.with_suffix(".bin")
    try:
        needed = max(
            (int(data.get("offset")) + int(data.get("size"))
             for layer in root.iter("layer") if layer.get("type") == "Const"
             for data in layer.iter("data") if data.get("offset") is not None),
            default=0,
        )
    except (TypeError, ValueError) as err:
        raise _fail(path, f"OpenVINO model with an unreadable constant offset or size ({err})") from err
    if needed:
        if not weights.is_file():
            raise _fail(path, f"its weights {weights.name} are missing: an OpenVINO model is the .xml and the .bin beside it")
        have = weights.stat().st_size
        if have != needed:
            raise _fail(path, f"its weights {weights} have {have} bytes, the model's constants need {needed}: "
                              f"{'cut short' if have < needed else 'a .bin of another model'}")
    metadata = root.find("rt_info/ssdlite/metadata")
    if metadata is not None:
        try:
            json.loads(metadata.get("value", ""))
        except ValueError as err:
            raise _fail(path, f"its ssdlite metadata (rt_info ssdlite/metadata) is not JSON ({err})") from err


def _check_torch(path: Path, size: int) -> None:
    head = _head(path, 4)
    if head[:1] == b"\x80":  # a pickle (protocol 2+): torch.save's legacy format, read by torch.load itself
        return
    if head[:4] != b"PK\x03\x04":
        raise _fail(path, "neither a PyTorch zip archive nor a legacy torch.save pickle")
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _fail(path, f"PyTorch archive cut short or corrupt ({err})") from err


#: suffix -> check of a file written with it
CHECKS: dict[str, Callable[[Path, int], None]] = {
    ".onnx": _check_onnx,
    ".tflite": _check_tflite,
    ".pte": _check_pte,
    ".xml": _check_openvino,
    ".pt": _check_torch,
    ".pth": _check_torch,
    ".torchscript": _check_torch,
}


def check_model_file(path: str | os.PathLike) -> None:
    """Raise :class:`ModelFileError` when the model file ``path`` is missing, unreadable, empty, or not a sound
    file of the format its suffix names (see the module docstring); directories and other suffixes pass."""
    path = Path(path)
    check = CHECKS.get(path.suffix.lower())
    if check is None or path.is_dir():
        return
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        size = path.stat().st_size
        _head(path, 1)
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from err
    if size == 0:
        raise _fail(path, "empty file (0 bytes): an interrupted copy or download?")
    try:
        check(path, size)
    except OSError as err:  # the file changed or vanished while read
        raise _fail(path, f"cannot be read ({err.strerror or err})") from err
