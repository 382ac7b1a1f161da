"""Data problems: which file, what is wrong with it, and what the loader does about it.

Every check in :mod:`ssdlite.data` ends in a :class:`Problem` of a known ``kind``; the kind fixes
its severity and the action taken, so ``ssdlite data check`` and training treat a problem the same
way and the outcome is documented in one table (:data:`KINDS`):

- ``note``: reported and counted, nothing is wrong with the sample (e.g. no objects, or a YOLO image
  without a label file: ``label_missing``).
- ``warning``: the sample is used after a fix (a box clipped or dropped); ``strict`` makes it an error.
- ``error``: the sample cannot be used and is skipped; ``ssdlite data check`` exits 1.
- ``fatal``: the dataset cannot be used at all (unknown class names); building it raises ``DataError``.

Annotation entries. Every entry a reader cannot turn into a box is one problem naming the file and the
entry (``object 2 'dog'`` in a VOC XML, ``line 3`` of a YOLO label file, ``annotation 17`` of a COCO
JSON, the split-file line of a listed sample) and what happens to it; nothing is dropped silently:

- an object whose coordinates are missing or not numbers, or a label line with the wrong number of
  fields (``box_malformed``), or with a NaN or infinite value (``box_nonfinite``): a ``warning``; the
  object is dropped and the image kept with its other objects, so its region is trained as background.
  ``--strict`` (``ssdlite data check`` and ``build_dataset(strict=True)``) refuses the dataset instead.
- a COCO annotation whose ``image_id`` is no image of the file (``annotation_orphan``): a ``warning``;
  no image of the dataset loses an object by it, since the image it names does not exist.
- a sample listed in ``ImageSets/Main/<split>.txt`` without its ``Annotations/<id>.xml``
  (``annotation_missing``), or an annotation file that cannot be parsed: an ``error``; the sample is
  skipped, never used as a background-only image.

One annotation, one image. Every name an annotation gives its image (a VOC ``<filename>`` and ``<path>``, a
COCO ``file_name``, a YOLO label file's stem) is checked against the image it is applied to:

- an annotation whose names point at two different images, or an image claimed by two annotations (two
  VOC XMLs naming it, two COCO image entries resolving to one file), or a label file two images would take
  (YOLO ``a.jpg`` and ``a.png`` beside ``a.txt``) is ``annotation_ambiguous``: an ``error``, every sample
  involved skipped, since any choice could train one image on another's boxes;
- a VOC XML whose ``<filename>`` names an image that is not there, applied to the image under the XML's own
  name (``a.xml`` to ``a.jpg``), is ``image_renamed``: a ``warning`` (an image renamed after labelling).
  A ``<filename>`` without extension or with another extension than the image, or a ``<path>`` on the
  annotator's machine whose base name is the image's, is no problem.

No usable box. A split whose samples hold no box that training uses (not difficult, not crowd) cannot train
or evaluate a detector: it is ``no_boxes``, ``fatal``, whose detail says why (every label file missing, with
where label files named after the images were found instead; every box dropped; every box difficult or
crowd; annotations with no objects). A split with no usable sample at all is ``no_samples``. Both are
found when a split is read (:func:`ssdlite.data.build.read_catalog`), so ``ssdlite data check`` exits 1 and
every command that reads the data (train, anchors fit, doctor, eval) refuses it before any work.

The ``no_objects`` note ("kept as a background-only image") tells an annotation that lists no objects
from one whose objects were all dropped ("all 2 of its objects were dropped"), which follows the
warnings that dropped them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("note", "warning", "error", "fatal")

# kind -> (severity, what happens)
KINDS: dict[str, tuple[str, str]] = {
    "no_objects": ("note", "kept as a background-only image"),
    "label_missing": ("note", "kept as a background-only image"),
    "box_clipped": ("warning", "box clipped to the image"),
    "box_outside": ("warning", "box dropped"),
    "box_empty": ("warning", "box dropped"),
    "box_inverted": ("warning", "box dropped"),
    "box_nonfinite": ("warning", "box dropped"),
    "box_malformed": ("warning", "box dropped"),
    "size_missing": ("warning", "size read from the image file"),
    "area_invalid": ("warning", "box area used for COCO's small/medium/large"),
    "annotation_orphan": ("warning", "annotation ignored"),
    "image_renamed": ("warning", "applied to the image under the annotation's own name"),
    "classes_inferred": ("warning", "classes taken from the annotations in sorted order"),
    "category_group": ("note", "not used as a class"),
    "split_held_out": ("note", "those images are kept for validation, not trained on"),
    "image_unannotated": ("note", "not used: an image is trained on only with its annotation file (one with no objects makes it background)"),
    "annotation_missing": ("error", "sample skipped"),
    "annotation_malformed": ("error", "sample skipped"),
    "annotation_unsafe": ("error", "file refused; sample skipped"),
    "annotation_ambiguous": ("error", "sample skipped"),
    "image_missing": ("error", "sample skipped"),
    "image_corrupt": ("error", "sample skipped"),
    "image_truncated": ("error", "sample skipped"),
    "image_too_large": ("error", "sample skipped"),
    "size_mismatch": ("error", "sample skipped"),
    "class_unknown": ("fatal", "dataset refused"),
    "class_list": ("fatal", "dataset refused"),
    "no_samples": ("fatal", "dataset refused"),
    "no_boxes": ("fatal", "dataset refused"),
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
        """``file: severity: detail; action [kind]``: the one line ``ssdlite data check`` prints for it.

        The severity comes second, as in a compiler's ``file: warning: ...``, so a warning line reads
        as one and can be found with grep.
        """
        return f"{self.file}: {self.severity}: {self.detail}; {self.action} [{self.kind}]"


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

    def usable(self) -> int:
        """Samples that can be used: none when a ``fatal`` problem refuses the dataset."""
        if any(p.severity == "fatal" for p in self.problems):
            return 0
        return self.num_samples - len(self.unusable_files())

    def summary(self) -> str:
        """Multi-line per-kind counts, most severe first; one line when there is nothing to say."""
        counts = self.counts()
        head = f"{self.source}: {self.num_samples} samples, {self.usable()} usable"
        if not counts:
            return head + ", no problems"
        total = sum(counts.values())
        lines = [head + f", {total} problem{'s' if total != 1 else ''}:"]
        order = sorted(counts, key=lambda k: (-SEVERITIES.index(KINDS[k][0]), k))
        for kind in order:
            severity, action = KINDS[kind]
            lines.append(f"  {kind:<20} {counts[kind]:>6}  ({severity}: {action})")
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (what a run's ``metrics.jsonl`` records).

        Keys: ``source``, ``samples`` (listed), ``usable``, ``problems`` (total), ``by_severity``
        (every severity, zeros included) and ``by_kind`` (only the kinds found).
        """
        counts = self.counts()
        by_severity = dict.fromkeys(SEVERITIES, 0)
        for kind, n in counts.items():
            by_severity[KINDS[kind][0]] += n
        return {
            "source": self.source,
            "samples": self.num_samples,
            "usable": self.usable(),
            "problems": sum(counts.values()),
            "by_severity": by_severity,
            "by_kind": dict(sorted(counts.items())),
        }

    def __repr__(self) -> str:
        return f"DataReport({self.source!r}, num_samples={self.num_samples}, problems={len(self.problems)})"


def data_summary(data: Any, max_lines: int = 20) -> tuple[str, dict[str, Any]]:
    """The summary training prints once before its first step, and the counts its log records.

    Args:
        data: a :class:`DataReport`, or a dataset holding one as ``report`` (what
            :func:`ssdlite.data.build_dataset` returns; ``torch.utils.data.Subset`` wrappers are looked through).
        max_lines: problem lines to show; warnings and worse only, in the order found (notes are counted).

    Returns:
        ``(text, counts)``: ``text`` is the problem lines as ``ssdlite data check`` prints them (at most
        ``max_lines``, then how many more) followed by :meth:`DataReport.summary`; ``counts`` is
        :meth:`DataReport.record`, JSON-ready.
    """
    while not isinstance(data, DataReport) and not hasattr(data, "report") and hasattr(data, "dataset"):
        data = data.dataset  # Subset
    if not isinstance(data, DataReport) and not hasattr(data, "report"):
        raise TypeError(f"data_summary needs a DataReport or a dataset with a 'report', got {type(data).__name__}")
    report = data if isinstance(data, DataReport) else data.report
    serious = [p.line() for p in report.problems if p.severity != "note"]
    lines = serious[:max_lines]
    if len(serious) > max_lines:
        lines.append(f"... and {len(serious) - max_lines} more (ssdlite data check lists every one)")
    return "\n".join([*lines, report.summary()]), report.record()
