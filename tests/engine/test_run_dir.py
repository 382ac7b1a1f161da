"""What a training run leaves behind, and how checkpoints are read back."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open

from ssdlite.data import SyntheticShapes, train_transforms
from ssdlite.data.synthetic import SHAPES
from ssdlite.engine import TrainConfig, train
from ssdlite.engine.checkpoint import NonFiniteWeights, check_same_architecture, load_checkpoint, save_checkpoint
from ssdlite.engine.trainer import best_key
from ssdlite.errors import UserError
from ssdlite.models import build_model
from ssdlite.models.io import load_model
from ssdlite.models.backbones import SIGNED_UNIT


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs on 8 tiny images, validated after each, with the doctor's collapse check as ``ssdlite train`` runs it."""
    from train_helpers import TINY

    from ssdlite.doctor.collapse import check_input_dependence

    run_dir = tmp_path_factory.mktemp("run")
    config = TrainConfig().replace(**TINY).replace(epochs=2, val_every=1)
    train_set = SyntheticShapes(8, size=128, seed=0, split="train", transforms=train_transforms("none", 128, SIGNED_UNIT[0]))
    val_set = SyntheticShapes(4, size=128, seed=0, split="val")
    result = train(config, train_set, val_set, run_dir, plain_progress=True, validation_checks=[check_input_dependence])
    return run_dir, config, result


def test_run_directory_has_every_artifact(run):
    run_dir, config, result = run
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "model.safetensors", "training_curves.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # The configuration as run: the model's architecture-dependent defaults resolved.
    assert TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text())) == config.resolved()

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all({"loss", "bbox_regression", "classification", "lr", "images_per_s"} <= set(r) for r in steps)
    assert [r["epoch"] for r in epochs] == [1, 2]
    # Wall time since the start, validations included: it grows, and covers at least the epochs' own seconds.
    assert 0 < epochs[0]["elapsed_s"] < epochs[1]["elapsed_s"] <= result.seconds
    assert epochs[1]["elapsed_s"] >= epochs[0]["seconds"] + epochs[1]["seconds"]
    assert all({"voc07_map50", "voc_map50", "coco_map"} <= set(r["val"]) for r in epochs)
    assert result.best_metric == max(r["val"]["voc07_map50"] for r in epochs)
    assert not [r for r in records if r["kind"] == "warning"], "a healthy model was reported as collapsed"


def test_checkpoints_hold_the_full_training_state(run):
    run_dir, config, result = run
    ckpt = load_checkpoint(run_dir)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
    assert ckpt["elapsed_s"] == epochs[-1]["elapsed_s"]  # a resumed run counts on from here
    assert TrainConfig.from_dict(ckpt["config"]) == config.resolved()
    assert ckpt["classes"] == ["circle", "square", "triangle", "star", "ring"]
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"])
    assert ckpt["optimizer"]["state"] and ckpt["scheduler"]["last_epoch"] == 4
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch and best["best_metric"] == result.best_metric
    # best.pt is the validation ranked highest by the metric and then its tie-breakers.
    keys = [best_key(r["val"], config.best_metric) for r in epochs]
    assert best["best_key"] == list(max(keys)) == list(keys[result.best_epoch - 1])


def test_an_equal_score_is_decided_by_the_finer_measures_of_the_same_validation():
    earlier = {"voc07_map50": 10 / 11, "voc_map50": 0.935, "coco_map": 0.446}
    later = {"voc07_map50": 10 / 11, "voc_map50": 0.965, "coco_map": 0.507}
    assert best_key(later, "voc07_map50") > best_key(earlier, "voc07_map50")
    # The metric itself comes first: a higher VOC07 wins over any finer measure.
    assert best_key({**earlier, "voc07_map50": 0.95}, "voc07_map50") > best_key(later, "voc07_map50")
    # All-point AP equal too: COCO mAP decides; a missing measure counts lowest.
    assert best_key({**earlier, "coco_map": 0.5}, "voc07_map50") > best_key(earlier, "voc07_map50")
    assert best_key(earlier, "voc07_map50") > best_key({"voc07_map50": 10 / 11, "voc_map50": 0.935}, "voc07_map50")
    # Ranked by COCO mAP: it is not repeated among the tie-breakers.
    assert best_key(earlier, "coco_map") == (0.446, 0.935)


def test_safetensors_rebuilds_the_model_with_ema_weights(run):
    run_dir, config, _ = run
    with safe_open(str(run_dir / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    model_config = json.loads(meta["ssdlite_config"])
    assert model_config["size"] == 128 and model_config["width_mult"] == 0.35 and model_config["num_classes"] == 6
    assert model_config["image_mean"] == [0.5, 0.5, 0.5] and json.loads(meta["classes"])[0] == "circle"
    model, info = load_model(run_dir / "model.safetensors")
    ema = torch.load(run_dir / "last.pt", weights_only=True)["ema"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, ema[key]), key
    assert not model.training and info["classes"][0] == "circle"


def test_checkpoint_of_another_architecture_is_refused(run):
    run_dir, _, _ = run
    ckpt = load_checkpoint(run_dir / "last.pt")
    other = build_model({**ckpt["model_config"], "width_mult": 0.5}).config
    with pytest.raises(UserError) as err:
        check_same_architecture(ckpt, other)
    assert "last.pt" in str(err.value) and "width_mult: checkpoint 0.35 vs now 0.5" in str(err.value)


def test_resuming_a_missing_or_foreign_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="must contain last.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"checkpoint .*last\.pt: cannot be read"):
        load_checkpoint(tmp_path)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="missing model_config"):
        load_checkpoint(tmp_path / "other.pt")


def test_non_finite_weights_never_replace_a_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})
    with pytest.raises(NonFiniteWeights):
        save_checkpoint(path, {"model": {"w": torch.tensor([1.0, float("nan")])}, "epoch": 2})
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


@pytest.mark.parametrize("freeze_bn", ["all", "none"])
def test_validation_warns_when_the_outputs_stop_depending_on_the_image(tmp_path, capsys, freeze_bn):
    """Statistics that no longer fit the weights flatten the features: the run says so (with the doctor's check
    passed in, as ``ssdlite train`` and ``ssdlite demo`` pass it). Frozen, the suggestion is the frozen-BatchNorm
    one; trained without precise BatchNorm, the running statistics lag the weights and the warning says so first."""
    from train_helpers import TINY

    from ssdlite.doctor.collapse import check_input_dependence
    from ssdlite.engine.trainer import build_training_model
    from ssdlite.models.io import save_safetensors

    config = TrainConfig().replace(**TINY).replace(epochs=1, val_every=1, freeze_bn=freeze_bn, precise_bn_images=0)
    planted = build_training_model(config, num_classes=6, load_backbone=False)
    last_bn = [m for m in planted.core.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    last_bn.running_mean.fill_(-1e3)  # saturates the ReLU6 after it: the last backbone map is 6 everywhere
    save_safetensors(planted, tmp_path / "planted.safetensors", classes=list(SHAPES))

    train_set = SyntheticShapes(8, size=128, seed=0, split="train", transforms=train_transforms("none", 128, SIGNED_UNIT[0]))
    val_set = SyntheticShapes(4, size=128, seed=0, split="val")
    train(
        config.replace(init_from=str(tmp_path / "planted.safetensors")), train_set, val_set, tmp_path / "run",
        plain_progress=True, validation_checks=[check_input_dependence],
    )

    err = capsys.readouterr().err
    assert "warning: the outputs barely depend on the image" in err
    assert ("with --precise-bn-images 0 the model is validated with BatchNorm's running statistics" in err) == (freeze_bn != "all")
    assert "retrain with BatchNorm in train mode" in err  # the check's own suggestion stays
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    warnings = [r for r in records if r["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["check"] == "input dependence" and "map 1" in warnings[0]["summary"]


def test_training_names_dropped_annotations_once_and_logs_the_counts(train_voc, tmp_path, capsys):
    """A box the reader cannot use trains as background: the run prints the reader's problem line before the
    first step, exactly as ``ssdlite data check`` words it, and ``metrics.jsonl`` records the counts."""
    import shutil

    from train_helpers import TINY

    from ssdlite.engine import build_datasets

    data = tmp_path / "voc"
    shutil.copytree(train_voc, data)
    xml = sorted((data / "Annotations").glob("*.xml"))[0]
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xml.write_text(text[:start] + "abc" + text[text.index("</xmax>"):])  # the first object's xmax

    config = TrainConfig().replace(**TINY).replace(data=str(data), epochs=1, val_every=0, precise_bn_images=0)
    train_set, val_set = build_datasets(config)
    train(config, train_set, val_set, tmp_path / "run", plain_progress=True)

    err = capsys.readouterr().err
    problem_lines = [line for line in err.splitlines() if "[box_malformed]" in line]
    assert len(problem_lines) == 1 and xml.name in problem_lines[0] and "'abc' is not a number" in problem_lines[0]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    data_records = {r["split"]: r for r in records if r["kind"] == "data"}
    assert set(data_records) == {"train", "val"}
    assert sum(r["by_kind"].get("box_malformed", 0) for r in data_records.values()) == 1
