"""Atomic file writes: a temporary file beside the target, then a rename.

A crash, a full disk or an interrupt never leaves a half-written file or destroys the previous one
(checkpoints, weights, results, plots, reports all go through here).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``."""
    path = Path(path)
    if path.is_dir():  # os.replace would name the temporary file in its error
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


#: The file that marks a folder :func:`replace_folder` wrote (and may replace whole again): its content says what wrote it.
FOLDER_MARK = ".ssdlite-output"


def check_replaceable_folder(folder: str | os.PathLike, flag: str) -> bool:
    """Before any work: ``folder`` may be replaced whole only when it does not exist, is empty, or was written by
    :func:`replace_folder` (it holds :data:`FOLDER_MARK`); anything else (a user's folder of their own files) is a
    ``UserError``, never deleted. Returns whether an earlier output is there (the caller's note)."""
    from ssdlite.errors import UserError

    folder = Path(folder)
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise UserError(f"{flag} {folder}: is a file, not a folder to write into")
    if (folder / FOLDER_MARK).is_file():
        return True
    if any(folder.iterdir()):
        raise UserError(f"{flag} {folder}: a folder of other files; this output replaces its folder whole, so it is "
                        "written only into a new or empty folder, or one an earlier ssdlite run wrote")
    return False


def replace_folder(folder: str | os.PathLike, build: Callable[[Path], object], what: str = "ssdlite") -> Path:
    """Call ``build(tmp_folder)`` on an empty folder beside ``folder``, then put it in place of ``folder``: a
    failure leaves no half-written folder, and an earlier ``folder`` is replaced whole (none of its files stay).
    The folder gets :data:`FOLDER_MARK` (saying ``what`` wrote it); an existing ``folder`` without it that is not
    empty is refused (:func:`check_replaceable_folder`), so a user's own folder is never deleted."""
    import shutil

    folder = Path(folder)
    check_replaceable_folder(folder, "output folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        build(building)
        (building / FOLDER_MARK).write_text(f"written by {what}; replaced whole by the next such run\n", encoding="utf-8")
        os.chmod(building, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder what mkdir would
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
            os.replace(folder, old / folder.name)
        os.replace(building, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike, flag: str, folder: bool = False) -> bool:
    """Check, before any work, that ``path`` can be written as a file (or, with ``folder``, a folder to write into).

    Refuses (``UserError`` naming ``flag`` and the path) a folder where a file is expected and the reverse, a
    parent that is a file, and a location without write permission. Returns whether ``path`` already exists
    (the caller decides whether replacing it needs a note).
    """
    from ssdlite.errors import UserError

    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{flag} {path}: is a file, not a folder to write into")
        if not folder and path.is_dir():
            raise UserError(f"{flag} {path}: is a folder; give the name of the file to write")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:  # the folder that will be created in
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.is_file() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path}: no permission to write in {parent}")
    return path.exists()


def refuse_overwriting_input(out: str | os.PathLike, flag: str, inputs: dict[str, str | os.PathLike | None],
                             folder: bool = False) -> None:
    """``UserError`` when the output ``out`` is one of the command's ``inputs`` (``{flag: path}``), or, for an output
    ``folder`` that is replaced whole, holds one: writing it would destroy what the command reads (e.g. ``--out``
    naming the ``--weights`` checkpoint, or the folder of the run directory)."""
    from ssdlite.errors import UserError

    target = Path(out).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if source == target or (folder and target in source.parents):
            what = "is" if source == target else "holds"
            raise UserError(f"{flag} {out}: {what} the {name} input; writing it would destroy it (choose another name)")
