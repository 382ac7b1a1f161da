"""Data problems: which file, what is wrong with it, and what the loader does about it.

Every check in :mod:`ssdlite.data` ends in a :class:`Problem` of a known ``kind``; the kind fixes
its severity and the action taken, so ``ssdlite data check`` and training treat a problem the same
way and the outcome is documented in one table (:data:`KINDS`):

- ``note``: reported and counted, nothing is wrong with the sample (e.g. no objects).
- ``warning``: the sample is used after a fix (a box clipped or dropped); ``strict`` makes it an error.
- ``error``: the sample cannot be used and is skipped; ``ssdlite data check`` exits 1.
- ``fatal``: the dataset cannot be used at all (unknown class names); building it raises ``DataError``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

SEVERITIES = ("note", "warning", "error", "fatal")

# kind -> (severity, what happens)
KINDS: dict[str, tuple[str, str]] = {
    "no_objects": ("note", "kept as a background-only image"),
    "box_clipped": ("warning", "box clipped to the image"),
    "box_outside": ("warning", "box dropped"),
    "box_empty": ("warning", "box dropped"),
    "box_inverted": ("warning", "box dropped"),
    "box_nonfinite": ("warning", "box dropped"),
    "box_malformed": ("warning", "box dropped"),
    "size_missing": ("warning", "size read from the image file"),
    "annotation_orphan": ("warning", "annotation ignored"),
    "classes_inferred": ("warning", "classes taken from the annotations in sorted order"),
    "annotation_missing": ("error", "sample skipped"),
    "annotation_malformed": ("error", "sample skipped"),
    "annotation_unsafe": ("error", "file refused; sample skipped"),
    "image_missing": ("error", "sample skipped"),
    "image_corrupt": ("error", "sample skipped"),
    "image_truncated": ("error", "sample skipped"),
    "image_too_large": ("error", "sample skipped"),
    "size_mismatch": ("error", "sample skipped"),
    "class_unknown": ("fatal", "dataset refused"),
    "class_list": ("fatal", "dataset refused"),
    "no_samples": ("fatal", "dataset refused"),
}


@dataclass(frozen=True)
class Problem:
    """One problem with one file: ``file`` (path as given), ``kind`` (a key of :data:`KINDS`), ``detail``."""

    file: str
    kind: str
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")

    @property
    def severity(self) -> str:
        return KINDS[self.kind][0]

    @property
    def action(self) -> str:
        return KINDS[self.kind][1]

    def line(self) -> str:
        """``file: detail; action [kind]``: the one line ``ssdlite data check`` prints for it."""
        return f"{self.file}: {self.detail}; {self.action} [{self.kind}]"


class DataReport:
    """The problems found in one dataset, with per-kind counts.

    Args:
        source: what was read (the dataset root or annotation file), for the summary.
        num_samples: samples listed by the annotations, usable or not.
        problems: the problems found so far; :meth:`add` appends more.
    """

    def __init__(self, source: str, num_samples: int = 0, problems: Iterable[Problem] = ()) -> None:
        self.source = source
        self.num_samples = num_samples
        self.problems: list[Problem] = list(problems)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def counts(self) -> Counter:
        """Problems per kind."""
        return Counter(p.kind for p in self.problems)

    def failures(self, strict: bool = False) -> list[Problem]:
        """Problems that make a sample (or the dataset) unusable; with ``strict`` warnings too."""
        bad = {"error", "fatal", "warning"} if strict else {"error", "fatal"}
        return [p for p in self.problems if p.severity in bad]

    def ok(self, strict: bool = False) -> bool:
        return not self.failures(strict)

    def unusable_files(self) -> set[str]:
        return {p.file for p in self.problems if p.severity == "error"}

    def summary(self) -> str:
        """Multi-line per-kind counts, most severe first; one line when there is nothing to say."""
        counts = self.counts()
        unusable = len(self.unusable_files())
        head = f"{self.source}: {self.num_samples} samples, {self.num_samples - unusable} usable"
        if not counts:
            return head + ", no problems"
        lines = [head + f", {sum(counts.values())} problems:"]
        order = sorted(counts, key=lambda k: (-SEVERITIES.index(KINDS[k][0]), k))
        for kind in order:
            severity, action = KINDS[kind]
            lines.append(f"  {kind:<20} {counts[kind]:>6}  ({severity}: {action})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DataReport({self.source!r}, num_samples={self.num_samples}, problems={len(self.problems)})"
