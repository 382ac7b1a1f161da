"""`ssdlite train` argument errors: clear messages and exit code 2, before any training starts."""

from __future__ import annotations

from ssdlite.cli import main


def test_missing_data_or_out_is_reported(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "--data PATH is required" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path)]) == 2
    assert "--out RUN_DIR is required" in capsys.readouterr().err


def test_bad_config_file_and_resume_dir_are_named(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "nope.yaml: no such configuration file" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"{tmp_path / 'last.pt'}: no such checkpoint" in capsys.readouterr().err


def test_a_dataset_smaller_than_a_batch_is_refused(train_voc, tmp_path, capsys):
    code = main(["train", "--data", str(train_voc), "--out", str(tmp_path / "run"), "--batch-size", "64", "--size", "128", "--width-mult", "0.35"])
    assert code == 2
    assert "16 images, fewer than one batch of 64" in capsys.readouterr().err
