"""What ``ssdlite predict SOURCE...`` reads: image and video files, folders (searched recursively) and globs."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from ssdlite.deploy.video import VIDEO_SUFFIXES
from ssdlite.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """Files in the order given; a folder gives its image and video files sorted, a glob its matches sorted.

    A file named explicitly is kept whatever its suffix (the decoder reports it if it is not an
    image). Duplicates are dropped. A source that matches nothing is a ``UserError``.
    """
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            matches = _images_in(path)
            if not matches:
                raise UserError(f"{source}: folder has no image or video files ({', '.join(sorted(MEDIA_SUFFIXES))})")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(source):
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
            matches = [p for p in matches if p.suffix.lower() in MEDIA_SUFFIXES]
            if not matches:
                raise UserError(f"{source}: the pattern matches no image or video file")
        else:
            raise UserError(f"{source}: no such file or folder")
        found.extend(matches)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]
