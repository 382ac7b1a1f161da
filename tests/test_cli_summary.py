import json
import subprocess
import sys

from ssdlite.cli import main


def test_summary_json_reports_the_paper_model(capsys):
    assert main(["summary", "--num-classes", "91", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_anchors"] == 2034
    assert abs(info["params"] - 4.3e6) / 4.3e6 <= 0.05
    for key in ("params", "madds", "num_anchors", "feature_maps"):
        assert key in info
    assert info["feature_maps"][0] == [576, 20, 20]


def test_summary_table_at_300(capsys):
    assert main(["summary", "--size", "300", "--num-classes", "21", "--width-mult", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "19x19" in out and "1917" in out and "registration OK" in out


def test_console_script_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "ssdlite.cli", "summary", "--size", "128", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["size"] == 128
