"""What the commands read as their list of inputs, and the one rule for an input they cannot use.

Inputs: image and video files, folders (searched recursively) and globs (``ssdlite predict SOURCE...``, export's
``--images``, the calibration images of ``quantize`` and ``export --int8``). In a folder or a glob, only files with
an image or video suffix (:data:`MEDIA_SUFFIXES`) count, and hidden files (a name starting with ``.``, such as
``.DS_Store`` or macOS's ``._photo.jpg``) never: the others (a README, labels) are not inputs, and are only
counted in one note. A file named explicitly is an input whatever its suffix.

**The rule** (:func:`check_unusable`), the same in every command: an input that cannot be used (a corrupt,
truncated or unreadable image or video, an image that fails to decode during ``eval``) is named on stderr as a
warning and counted in the command's summary ("on 2 images (1 unreadable: c.jpg: ...)"); it is an error
(:class:`~ssdlite.errors.UserError`, exit 2) with ``--strict``, or when no input at all is usable.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssdlite.deploy.video import VIDEO_SUFFIXES
from ssdlite.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Unusable:
    """An input a command could not use: ``path`` and ``reason``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _is_input(path: Path, root: Path | None) -> bool:
    """A file found in a folder walk or a glob is an input when it has a media suffix and is not hidden."""
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    return path.suffix.lower() in MEDIA_SUFFIXES and not any(part.startswith(".") for part in parts)


def expand_sources(sources: Sequence[str], ignored: list[Path] | None = None) -> list[Path]:
    """Files in the order given; a folder gives its image and video files sorted, a glob its matches sorted.

    A file named explicitly is kept whatever its suffix (the decoder reports it if it is not an
    image). Duplicates are dropped. A source that matches nothing is a ``UserError``. The other files of
    folders and globs (not an image or video suffix, or hidden) are appended to ``ignored`` when given.
    """
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            matches = [p for p in files if _is_input(p, path)]
            if not matches:
                raise UserError(f"{source}: folder has no image or video files ({', '.join(sorted(MEDIA_SUFFIXES))})")
        elif path.is_file():
            files = matches = [path]
        elif glob.has_magic(source):
            files = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
            matches = [p for p in files if _is_input(p, None)]
            if not matches:
                raise UserError(f"{source}: the pattern matches no image or video file")
        else:
            raise UserError(f"{source}: no such file or folder")
        found.extend(matches)
        if ignored is not None:
            kept = set(matches)
            ignored.extend(p for p in files if p not in kept)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]


def note_ignored(ignored: Sequence[Path], shown: int = 3) -> None:
    """One note on stderr for the files of folders and globs that are not inputs (README, .DS_Store, ...)."""
    if ignored:
        names = ", ".join(p.name for p in ignored[:shown]) + (f", ... ({len(ignored) - shown} more)" if len(ignored) > shown else "")
        print(f"note: ignored {len(ignored)} file{'s' if len(ignored) != 1 else ''} that are not images or videos "
              f"(by suffix) or are hidden: {names}", file=sys.stderr)


def unusable_summary(unusable: Sequence[Unusable], shown: int = 3) -> str:
    """What a command's summary adds: ``" (1 unreadable: DIR/c.jpg: cannot identify image file)"``, or ``""``."""
    if not unusable:
        return ""
    listed = "; ".join(str(u) for u in unusable[:shown]) + (f"; ... ({len(unusable) - shown} more above)" if len(unusable) > shown else "")
    return f" ({len(unusable)} unreadable: {listed})"


def check_unusable(what: str, used: int, unusable: Sequence[Unusable], strict: bool = False, warn: bool = True) -> str:
    """The rule for inputs a command cannot use (see the module docstring); returns :func:`unusable_summary`.

    Args:
        what: the inputs, for messages (``"--images"``, ``"calibration images"``).
        used: how many inputs were used.
        unusable: those that could not be.
        strict: the command's ``--strict``: any unusable input is an error.
        warn: print one warning per unusable input (False when the command already named each as it met it).

    Raises:
        UserError: naming every unusable input, with ``strict`` when there is any, and when ``used`` is 0.
    """
    if unusable and (strict or not used):
        why = "--strict: every input must be usable" if used else f"none of the {len(unusable)} {what} can be used"
        raise UserError(f"{why}; " + "; ".join(str(u) for u in unusable))
    if not used:
        raise UserError(f"no {what} to use")
    if warn:
        for item in unusable:
            print(f"warning: {item}; not used", file=sys.stderr)
    return unusable_summary(unusable)
