"""``training_curves.png``: losses, learning rate and validation mAP of a run, read from ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from ssdlite.engine.run_log import read_metrics
from ssdlite.files import atomic_write


def plot_training_curves(metrics_path: str | Path, out_path: str | Path) -> None:
    """Three panels: step losses (with per-epoch means), learning rate, validation metrics by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key, style in (("loss", "-"), ("bbox_regression", "--"), ("classification", ":")):
        xs = [r["step"] for r in steps if isinstance(r.get(key), (int, float))]
        ys = [r[key] for r in steps if isinstance(r.get(key), (int, float))]
        ax.plot(xs, ys, style, label=key, alpha=0.8)
    ax.set(title="training loss", xlabel="step", yscale="log")
    ax.legend()
    axes[1].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[1].set(title="learning rate", xlabel="step")
    ax = axes[2]
    validated = [r for r in epochs if isinstance(r.get("val"), dict)]
    for key in ("voc07_map50", "voc_map50", "coco_map"):
        xs = [r["epoch"] for r in validated if isinstance(r["val"].get(key), (int, float))]
        ys = [r["val"][key] for r in validated if isinstance(r["val"].get(key), (int, float))]
        if xs:
            ax.plot(xs, ys, "o-", label=key)
    ax.set(title="validation (EMA weights)", xlabel="epoch", ylim=(0, 1))
    if validated:
        ax.legend()
    fig.tight_layout()
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
