"""The web: ``ssdlite export --format web --out DIR`` writes a static folder that detects in the browser.

The model is the LiteRT export (:mod:`ssdlite.deploy.runtimes.litert`, verified against PyTorch as every export
is), run in the page by MediaPipe Tasks' ``ObjectDetector`` (WebAssembly, from the npm package
``@mediapipe/tasks-vision``, Apache-2.0), copied into the folder: the page loads nothing from elsewhere. Any
static file server serves it (``python -m http.server -d DIR``); browsers do not run WebAssembly modules from
``file://``.

``DIR`` holds ``index.html`` (:func:`ssdlite.deploy.page.render`, the page ``ssdlite serve`` shows too),
``web.js`` (the detection), ``draw.js`` (the drawing both pages share), ``style.css``, ``favicon.svg``,
``model.tflite``, ``metadata.json`` (classes, colours, input size, default threshold) and ``mediapipe/``
(``vision_bundle.mjs`` and the SIMD and non-SIMD WebAssembly builds; the loader picks what the browser has).

MediaPipe's files are found (:func:`find_mediapipe`) in ``--mediapipe DIR``, else ``./node_modules/``, else
ssdlite's cache; where none has them and ``npm`` is installed, ``npm pack`` fetches the pinned version once into
the cache. The folder is built beside ``DIR`` and put in place whole (:func:`ssdlite.files.replace_folder`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ssdlite.deploy.runtimes import get
from ssdlite.errors import UserError

RUNTIME = get("web")
NPM_PACKAGE = "@mediapipe/tasks-vision"
MEDIAPIPE_VERSION = "1.1.0"  # the version the page is tested with (tests/deploy/test_web_export.py)
MEDIAPIPE_FILES = (
    "vision_bundle.mjs",
    "wasm/vision_wasm_internal.js",
    "wasm/vision_wasm_internal.wasm",
    "wasm/vision_wasm_nosimd_internal.js",
    "wasm/vision_wasm_nosimd_internal.wasm",
)
PAGE_FILES = ("draw.js", "web.js", "style.css", "favicon.svg")
NPM_TIMEOUT_S = 300


def cache_folder() -> Path:
    """Where a fetched MediaPipe package is kept: ``$XDG_CACHE_HOME/ssdlite`` (``~/.cache/ssdlite``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ssdlite" / f"mediapipe-tasks-vision-{MEDIAPIPE_VERSION}"


def _missing(folder: Path) -> list[str]:
    return [name for name in MEDIAPIPE_FILES if not (folder / name).is_file()]


def _version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fetch_mediapipe(target: Path) -> Path:
    """``npm pack`` the pinned package and extract it to ``target/package`` (built beside, then moved in place)."""
    npm = shutil.which("npm")
    spec = f"{NPM_PACKAGE}@{MEDIAPIPE_VERSION}"
    print(f"fetching {spec} (MediaPipe's web files, about 12 MB) with npm, once; kept in {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            done = subprocess.run([npm, "pack", spec, "--pack-destination", tmp], capture_output=True, text=True,
                                  timeout=NPM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as err:
            raise UserError(f"npm pack {spec} did not finish in {NPM_TIMEOUT_S} s; pass --mediapipe DIR instead") from err
        archives = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not archives:
            raise UserError(f"npm pack {spec} failed ({(done.stderr or done.stdout).strip()[-400:]}); "
                            "pass --mediapipe DIR (an extracted copy of the package) instead")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(Path(tmp) / "x", filter="data")  # the "data" filter refuses links and paths outside
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / "x", target)
    return target / "package"


def find_mediapipe(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(folder, note)``: the ``@mediapipe/tasks-vision`` package folder whose files the page copies."""
    if explicit is not None:
        folder = Path(explicit)
        if (folder / "package" / MEDIAPIPE_FILES[0]).is_file():  # an extracted `npm pack` archive
            folder = folder / "package"
        missing = _missing(folder)
        if missing:
            raise UserError(f"--mediapipe {explicit}: not a copy of the npm package {NPM_PACKAGE} (no {', '.join(missing)})")
    else:
        candidates = [Path.cwd() / "node_modules" / NPM_PACKAGE, cache_folder() / "package"]
        folder = next((c for c in candidates if not _missing(c)), None)
        if folder is None:
            if shutil.which("npm") is None:
                raise UserError(
                    f"the web page needs MediaPipe's web files (the npm package {NPM_PACKAGE} {MEDIAPIPE_VERSION}, "
                    f"Apache-2.0), which are not here: install npm (Node.js) and run the export again, or fetch them "
                    f"elsewhere with 'npm pack {NPM_PACKAGE}@{MEDIAPIPE_VERSION}', extract the archive and pass "
                    "--mediapipe DIR"
                )
            folder = fetch_mediapipe(cache_folder())
    version = _version(folder)
    note = "" if version == MEDIAPIPE_VERSION else f"; MediaPipe {version} (tested with {MEDIAPIPE_VERSION})"
    return folder, note


def metadata(model, classes: Sequence[str]) -> dict:
    """What the page reads first (``metadata.json``)."""
    import importlib.metadata

    from ssdlite.deploy.draw import PALETTE
    from ssdlite.deploy.predictor import SCORE_THRESHOLD

    return {
        "classes": list(classes),
        "colors": list(PALETTE),
        "input_size": model.config.size,
        "arch": model.config.arch,
        "version": importlib.metadata.version("ssdlite"),  # as serve's metadata says it
        "default_score_threshold": SCORE_THRESHOLD,  # the slider's first position, ssdlite predict's default
        "mediapipe": MEDIAPIPE_VERSION,
    }


def export(model, path: str | os.PathLike, classes: Sequence[str] = (), *, mediapipe: str | os.PathLike | None = None,
           **options):
    """Write the folder ``path``; ``options`` go to the LiteRT export (``images``, ``int8``, ``calibration``,
    ``candidates``). Returns the LiteRT export's report, with the page's files noted."""
    from ssdlite.deploy.page import FOLDER, render
    from ssdlite.deploy.runtimes import implementation
    from ssdlite.files import replace_folder

    source, note = find_mediapipe(mediapipe)  # before the conversion: a missing package fails in a second
    content, report = implementation("tflite").build(model, classes, **options)
    report.format = RUNTIME.name
    page = render(
        title="ssdlite in the browser",
        script='<script src="web.js" type="module"></script>',
        loading="Loading the model…",
        footer='Detected in this browser by MediaPipe Tasks\' ObjectDetector (WebAssembly); nothing leaves the page '
        '&middot; <a href="model.tflite">model.tflite</a> &middot; <a href="metadata.json">metadata</a>',
    )

    def build(folder: Path) -> None:
        (folder / "index.html").write_text(page, encoding="utf-8")
        for name in PAGE_FILES:
            shutil.copyfile(FOLDER / name, folder / name)
        (folder / "model.tflite").write_bytes(content)
        (folder / "metadata.json").write_text(json.dumps(metadata(model, classes), indent=1), encoding="utf-8")
        for name in MEDIAPIPE_FILES:
            (folder / "mediapipe" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, folder / "mediapipe" / name)

    replace_folder(path, build, what="ssdlite export --format web")
    report.path = str(path)
    report.notes.append(f"page: index.html + MediaPipe {NPM_PACKAGE} from {source}{note}; serve the folder, e.g. "
                        f"python -m http.server -d {path}")
    return report
