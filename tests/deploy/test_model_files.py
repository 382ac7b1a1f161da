"""A bad exported model file is a clear error before any runtime's native loader sees it, never an abort."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import pytest
import torch
from deploy_helpers import write_images

from ssdlite.deploy.model_files import ModelFileError, check_model_file

SUFFIXES = (".onnx", ".tflite", ".pte", ".xml", ".pt")
RANDOM = torch.randint(0, 256, (20000,), generator=torch.Generator().manual_seed(3), dtype=torch.uint8).numpy().tobytes()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return buffer.getvalue()


# A sound file of another format under each suffix: the check reads the content, not the name.
FOREIGN = {
    ".onnx": _zip_bytes(),
    ".tflite": b"<\x00\x00\x00ET12eh00" + bytes(64),
    ".pte": b"\x1c\x00\x00\x00TFL3" + bytes(64),
    ".xml": b'<?xml version="1.0"?>\n<annotation><filename>a.jpg</filename></annotation>\n',
    ".pt": b"<?xml version=\"1.0\"?>\n<net name=\"m\" version=\"11\"></net>\n",
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("content", ["empty", "random", "foreign"])
def test_broken_file_under_every_suffix_is_named(tmp_path, suffix, content):
    path = tmp_path / f"model{suffix}"
    path.write_bytes({"empty": b"", "random": RANDOM, "foreign": FOREIGN[suffix]}[content])
    with pytest.raises(ModelFileError) as caught:
        check_model_file(path)
    assert str(path) in str(caught.value)
    if content == "empty":
        assert "empty file" in str(caught.value)


@pytest.fixture(scope="module")
def sound_files(tmp_path_factory, onnx_raw, model, export_once):
    """One file of every format, as ``ssdlite export`` wrote it (the static ones skip without their runtime)."""
    from ssdlite.deploy.torchscript import export_torchscript

    torchscript = tmp_path_factory.mktemp("torchscript") / "model.pt"
    export_torchscript(model, torchscript, ["cat", "dog", "bird"])
    files = {".onnx": onnx_raw[0], ".pt": torchscript}
    for runtime in ("executorch", "tflite", "openvino"):
        try:
            path = export_once(runtime)
        except pytest.skip.Exception:
            continue
        files[path.suffix] = path
    return files


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_sound_file_passes_and_a_cut_copy_is_refused(tmp_path, sound_files, suffix):
    if suffix not in sound_files:
        pytest.skip(f"no {suffix} file: its runtime is not installed")
    path = sound_files[suffix]
    check_model_file(path)
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 100):
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[:keep])
        if suffix == ".xml":
            (tmp_path / "cut.bin").write_bytes(path.with_suffix(".bin").read_bytes())
        with pytest.raises(ModelFileError, match="cut|corrupt|does not parse"):
            check_model_file(cut)


def test_openvino_weights_missing_cut_or_of_another_model(tmp_path, sound_files):
    if ".xml" not in sound_files:
        pytest.skip("needs the 'openvino' package")
    xml = tmp_path / "model.xml"
    xml.write_bytes(sound_files[".xml"].read_bytes())
    weights = sound_files[".xml"].with_suffix(".bin").read_bytes()
    with pytest.raises(ModelFileError, match="model.bin are missing"):
        check_model_file(xml)
    (tmp_path / "model.bin").write_bytes(weights[:-8])
    with pytest.raises(ModelFileError, match="cut short"):
        check_model_file(xml)
    (tmp_path / "model.bin").write_bytes(weights + bytes(8))
    with pytest.raises(ModelFileError, match="a .bin of another model"):
        check_model_file(xml)


def test_onnx_with_unreadable_ssdlite_metadata(tmp_path, onnx_raw):
    import onnx

    model = onnx.load(onnx_raw[0])
    for entry in model.metadata_props:
        if entry.key == "ssdlite_config":
            entry.value = "{not json"
    path = tmp_path / "meta.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelFileError, match="'ssdlite_config' is not JSON"):
        check_model_file(path)


def test_missing_directory_and_other_suffixes(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        check_model_file(tmp_path / "none.tflite")
    (tmp_path / "folder.onnx").mkdir()
    check_model_file(tmp_path / "folder.onnx")  # a directory is a run directory: load_model's to read
    check_model_file(tmp_path / "weights.safetensors")  # not an exported format: its own reader checks it


def test_every_backend_checks_before_loading(tmp_path):
    from ssdlite.deploy.predictor import Predictor

    path = tmp_path / "model.tflite"
    path.write_bytes(RANDOM)
    with pytest.raises(ModelFileError, match="no FlatBuffer identifier 'TFL3'"):
        Predictor(path, backend="tflite")


def test_predict_on_random_bytes_pte_is_an_error_not_an_abort(tmp_path):
    """ExecuTorch's loader aborted the interpreter (SIGABRT) on this file: run in a child so a regression cannot
    take pytest down with it."""
    path = tmp_path / "model.pte"
    path.write_bytes(RANDOM)
    image = write_images(tmp_path / "images", 1)[0]
    done = subprocess.run(
        [sys.executable, "-m", "ssdlite.cli", "predict", str(image), "--weights", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{path}: not an ExecuTorch program" in done.stderr and "Traceback" not in done.stderr
