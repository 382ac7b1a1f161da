import json

import numpy as np
from PIL import Image

from ssdlite.cli import main


def write_voc(root, boxes_per_image, size=96):
    """A minimal VOC dataset: noise images with the given boxes of class 'dot'."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "labels.txt").write_text("dot\n")
    rng = np.random.default_rng(0)
    for i, boxes in enumerate(boxes_per_image):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        objects = "".join(
            f"<object><name>dot</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for x1, y1, x2, y2 in boxes
        )
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>{size}</width><height>{size}</height><depth>3</depth>"
            f"</size>{objects}</annotation>"
        )


def test_doctor_exits_1_on_boxes_the_default_boxes_cannot_cover_and_writes_the_report(tmp_path, capsys):
    write_voc(tmp_path / "data", [[(10, 10, 12, 12), (40, 50, 42, 53)], [(70, 20, 72, 22)], [(5, 80, 7, 82)]])
    out = tmp_path / "report"
    code = main(
        ["doctor", "--data", str(tmp_path / "data"), "--size", "128", "--width-mult", "0.35", "--overfit-steps", "3", "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] default-box coverage: 0.0% of 4 boxes" in text
    assert "[PASS] registration" in text and "[PASS] labels" in text
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "FAIL"
    assert {c["name"] for c in report["checks"]} >= {"registration", "gradient flow", "labels", "inputs", "default-box coverage", "overfit one batch"}
    assert (out / "coverage.png").stat().st_size > 0 and (out / "overfit_loss.png").stat().st_size > 0


def test_anchors_fit_writes_a_config_and_reports_before_and_after(tmp_path, capsys):
    write_voc(tmp_path / "data", [[(10, 10, 16, 16), (40, 50, 46, 57)], [(70, 20, 76, 26)]])
    out = tmp_path / "anchors.yaml"
    assert main(["anchors", "fit", "--data", str(tmp_path / "data"), "--size", "128", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "current (0.2-0.95, ratios 2.0 3.0, reduced True)" in text
    # The model flags describe the starting point, as in every other command.
    assert main(["anchors", "fit", "--data", str(tmp_path / "data"), "--size", "128", "--min-scale", "0.1",
                 "--aspect-ratios", "2", "--out", str(tmp_path / "other.yaml")]) == 0
    assert "current (0.1-0.95, ratios 2.0, reduced True)" in capsys.readouterr().out
    import yaml

    model = yaml.safe_load(out.read_text())["model"]
    assert set(model) == {"size", "min_scale", "max_scale", "aspect_ratios", "reduce_lowest"}
    assert model["min_scale"] < 0.2
    # The file is a configuration `ssdlite train --config` reads, and the model it describes uses the fitted boxes.
    from ssdlite.engine.config import load_yaml
    from ssdlite.engine.trainer import build_training_model

    config = load_yaml(out)
    built = build_training_model(config, 2)
    assert built.config.min_scale == model["min_scale"] and built.config.reduce_lowest == model["reduce_lowest"]


def test_model_flags_apply_on_top_of_a_config_file(tmp_path):
    """`ssdlite doctor --config FILE --size S`: the flags override the file, as for `ssdlite train`."""
    from ssdlite.cli import build_parser
    from ssdlite.cli.doctor import build_subject

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  size: 160\n  width_mult: 0.35\n")
    args = build_parser().parse_args(["doctor", "--data", "d", "--config", str(recipe), "--size", "128", "--min-scale", "0.1"])
    model, optimizer, _ = build_subject(args, ["a", "b"])
    assert (model.size, model.config.width_mult, model.config.min_scale) == (128, 0.35, 0.1)
    assert optimizer is not None
