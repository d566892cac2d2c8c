"""Grid and seed parsing, and the runs a grid expands to."""

from __future__ import annotations

import pytest

from flowrl.errors import UserError
from flowrl.experiments.grid import expand, parse_grid, parse_seeds


def test_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3") == [3]
    assert parse_seeds("0,2, 7-8") == [0, 2, 7, 8]
    for bad in ("4-1", "a", "1-", "0,0", ""):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_grid_values_keep_brackets_together():
    grid = parse_grid(["optim.betas=[0.9,0.99],[0.9,0.999]", "model.attention=flow,softmax"])
    assert grid == {
        "optim.betas": ["[0.9,0.99]", "[0.9,0.999]"],
        "model.attention": ["flow", "softmax"],
    }
    for bad, message in [
        ("model.attention", "expected key=value1"),
        ("seed=1,2", "use --seeds"),
        ("name=a,b", "sets name itself"),
        ("model.attention=flow,flow", "distinct"),
        ("model.attention=flow,", "non-empty"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_grid([bad])
    with pytest.raises(UserError, match="twice"):
        parse_grid(["steps=1", "steps=2"])


def test_expand_is_the_product_times_the_seeds():
    grid = {"model.attention": ["flow", "softmax"], "data.dataset": ["zoo/hopper/medium-v0"]}
    runs = expand(grid, [0, 1, 2])
    assert len(runs) == 2 * 1 * 3
    assert runs[0].name == "attention-flow_dataset-zoo_hopper_medium-v0_seed-0"
    assert runs[0].overrides == [
        "model.attention=flow",
        "data.dataset=zoo/hopper/medium-v0",
        "seed=0",
    ]
    assert len({run.name for run in runs}) == 6
    # keys that share a last component keep their full names
    (run,) = expand({"model.dropout": ["0.1"], "eval.dropout": ["0"]}, [0])
    assert run.name == "model.dropout-0.1_eval.dropout-0_seed-0"
    with pytest.raises(UserError, match="same run folder"):
        expand({"data.dataset": ["a/b", "a_b"]}, [0])
