"""Class lists: reading ``labels.txt``, refusing lists that cannot work, naming unknown classes.

Label 0 is background in the model (torchvision's convention), so foreground class ``classes[i]`` gets
label ``i + 1``. A class list that itself contains ``background`` (as torchvision's
``["__background__", ...]`` lists do) would shift every label by one; it is refused rather than
guessed at.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ssdlite.data.problems import Problem
from ssdlite.errors import DataError

_BACKGROUND_NAMES = {"background", "__background__", "_background_"}


def read_class_file(path: str | Path) -> list[str]:
    """One class name a line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the class list ({err})") from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [name for name in names if name]


def read_labelmap(path: str | Path) -> list[str]:
    """The foreground classes of CVAT's and Datumaro's VOC ``labelmap.txt`` (``name:color:parts:actions``
    lines after a ``#`` header; its ``background`` line, the segmentation masks' label 0, is not a class)."""
    names = [line.split(":", 1)[0].strip() for line in read_class_file(path)]
    return [name for name in names if name and name.lower() not in _BACKGROUND_NAMES]


def check_class_list(classes: Sequence[str], source: str) -> list[Problem]:
    """``class_list`` problems (fatal): empty list, duplicate names, a background entry."""
    problems = []
    if not classes:
        problems.append(Problem(source, "class_list", "the class list is empty"))
    duplicates = sorted(name for name, n in Counter(classes).items() if n > 1)
    if duplicates:
        problems.append(Problem(source, "class_list", f"duplicate class names {duplicates}"))
    background = [name for name in classes if name.strip().lower() in _BACKGROUND_NAMES]
    if background:
        problems.append(
            Problem(
                source,
                "class_list",
                f"class {background[0]!r} collides with label 0, which is always background; "
                "list only the foreground classes",
            )
        )
    return problems


class UnknownClasses:
    """Collects class names (or ids) not in the class list, with where they were seen."""

    def __init__(self) -> None:
        self.files: dict[str, list[str]] = defaultdict(list)

    def add(self, name: str, file: str) -> None:
        self.files[str(name)].append(file)

    def problems(self, source: str, known: Iterable[str]) -> list[Problem]:
        """One fatal ``class_unknown`` problem listing every unknown name, or nothing."""
        if not self.files:
            return []
        parts = []
        for name in sorted(self.files):
            files = self.files[name]
            parts.append(f"{name!r} ({len(files)} objects, e.g. {files[0]})")
        detail = f"unknown classes {', '.join(parts)}; known classes are {list(known)}"
        return [Problem(source, "class_unknown", detail)]
