"""The recipe search (``ssdlite train --search``): its candidates, its design around the rules' prior, and a
real (tiny) search that trains trials on part of the training split and fits the final schedule to the time."""

from __future__ import annotations

import pytest
import torch

from ssdlite.engine import search
from ssdlite.engine.config import TrainConfig
from ssdlite.errors import UserError


def test_candidate_space_starts_with_the_rules_choice_and_fixes_given_settings():
    config = TrainConfig().replace(augment="ssd", lr=0.02, size=320).resolved()
    space = search.candidate_space(config, set(), small_share=0.2)
    assert space["augment"][0] == "ssd" and sorted(space["augment"]) == sorted(search.AUGMENTS)
    assert space["size"] == [320, 384, 448] and space["lr"] == [0.02, 0.01, 0.04]
    assert search.candidate_space(config, set(), small_share=0.0)["size"] == [320, 384]  # no small boxes: not 448
    larger = config.replace(size=448).resolved()  # the rules' choice for tiny boxes: the smaller sizes are the others
    assert search.candidate_space(larger, set(), small_share=0.2)["size"] == [448, 384, 320]
    fixed = search.candidate_space(config, {"augment", "lr"}, small_share=0.2)
    assert fixed["augment"] == ["ssd"] and fixed["lr"] == [0.02]


def test_one_factor_design_changes_one_setting_at_a_time_after_the_prior():
    design = search.one_factor_design({"augment": ["a", "b", "c"], "size": [320, 384], "lr": [1.0]})
    assert design == [  # the settings take turns, so that a short search has tried each
        {"augment": "a", "size": 320, "lr": 1.0},
        {"augment": "b", "size": 320, "lr": 1.0},
        {"augment": "a", "size": 384, "lr": 1.0},
        {"augment": "c", "size": 320, "lr": 1.0},
    ]


def test_search_runs_trials_on_the_training_split_and_fits_the_final_schedule(train_voc, tiny_config, monkeypatch, tmp_path):
    """Four augmentation trials (size and lr given, so fixed) on the tiny shapes: the rules' choice first, every
    trial trains (mosaic included) and validates on the held-out 20% of the training split, the choice is the best
    measured trial, and the final epochs fit the time left."""
    # The machine's speed and the clock are the test's: the schedule is the same on a loaded machine.
    monkeypatch.setattr(search, "PLANNED_TRIALS", 4)
    monkeypatch.setattr(search, "MAX_TRIALS", 4)
    monkeypatch.setattr(search, "measure_speed", lambda *args, **kwargs: 200.0)
    config = tiny_config.replace(data=str(train_voc), augment="ssdlite", val_every=1).resolved()
    lines: list[str] = []
    chosen, choices, speed = search.search_recipe(
        config, {"size", "lr"}, 0.04, torch.device("cpu"), small_share=0.0, val_images=4, print_fn=lines.append,
        workdir=tmp_path, clock=lambda: 0.0,
    )
    text = "\n".join(lines)
    assert "input 128: training 200.0 img/s" in text and "ms per image" in text
    # 0.96 s of trials at 200 img/s: 2.67 full trials' worth for 4 (three are pruned early or not), 3 validations each
    assert "4 trials of 4 epochs on 13 images, first validation after 1" in text
    trial_lines = [line for line in lines if line.strip().startswith("trial ")]
    assert trial_lines[0].startswith("  trial 0: augment ssdlite") and "failed" not in text
    augments = [line.split("augment ")[1].split()[0] for line in trial_lines]
    assert augments[:4] == ["ssdlite", "ssd", "fine", "mosaic"]  # the prior, then one factor at a time
    assert sorted((tmp_path / "trial3").iterdir())  # the mosaic trial trained and wrote its run
    by_name = {c.name: c for c in choices}
    assert set(by_name) == {"augment", "epochs", "val_every"}
    assert chosen.data.augment == by_name["augment"].value and chosen.model.size == 128 and chosen.optim.lr == config.optim.lr
    assert chosen.epochs == by_name["epochs"].value >= 1 and speed == 200.0
    assert f"search: {len(trial_lines)} trials" in lines[-1]


def test_search_refuses_a_time_too_short_for_its_trials(train_voc, tiny_config, monkeypatch):
    monkeypatch.setattr(search, "measure_speed", lambda *args, **kwargs: 200.0)
    config = tiny_config.replace(data=str(train_voc)).resolved()
    with pytest.raises(UserError, match="give a longer --time-budget"):
        search.search_recipe(config, set(), 0.01, torch.device("cpu"), 0.0, 4, print_fn=lambda _: None)


def test_a_short_budget_runs_fewer_trials_instead_of_refusing(train_voc, tiny_config, monkeypatch, tmp_path):
    """When even the shortest trials do not fit the planned number, the design's first ones run (two at least)."""
    monkeypatch.setattr(search, "measure_speed", lambda *args, **kwargs: 200.0)
    config = tiny_config.replace(data=str(train_voc), augment="ssdlite").resolved()
    lines: list[str] = []
    # 0.02 minutes: 0.48 s of trials; a 3-epoch trial of 13 images with 3 validations costs 0.28 s: 1.7 full
    # trials' worth, which is two trials (the second probably pruned).
    search.search_recipe(config, {"size", "lr"}, 0.02, torch.device("cpu"), 0.0, 4, print_fn=lines.append,
                         workdir=tmp_path, clock=lambda: 0.0)
    assert any(line.startswith("  2 trials of 3 epochs") for line in lines), lines
    assert len([line for line in lines if line.startswith("  trial ")]) == 2
    with pytest.raises(UserError, match="leave out --epochs"):
        search.search_recipe(config, {"epochs"}, 10, torch.device("cpu"), 0.0, 4, print_fn=lambda _: None)
