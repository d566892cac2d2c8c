"""Grid and seed parsing, and the runs a grid expands to."""

from __future__ import annotations

import re

import pytest

from flowrl.errors import MAX_NAME_BYTES, UserError, check_name
from flowrl.experiments.grid import (
    MAX_PREFIX_BYTES,
    MAX_RUNS,
    check_size,
    expand,
    parse_grid,
    parse_seeds,
)
from tests.experiments.conftest import flowrl


def seeds(text: str) -> list[int]:
    return [seed for part in parse_seeds(text) for seed in part]


def test_seeds():
    assert seeds("0-4") == [0, 1, 2, 3, 4]
    assert seeds("3") == [3]
    assert seeds("0,2, 7-8") == [0, 2, 7, 8]
    assert len(parse_seeds("0-999999999999")[0]) == 10**12  # a range, not a list
    for bad in ("4-1", "a", "1-", "0,0", "", "0-5,3", "7,2-9"):
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
    runs = list(expand(grid, parse_seeds("0-2")))
    assert len(runs) == 2 * 1 * 3
    assert runs[0].name == "attention-flow_dataset-zoo_hopper_medium-v0_seed-0"
    assert runs[0].overrides == [
        "model.attention=flow",
        "data.dataset=zoo/hopper/medium-v0",
        "seed=0",
    ]
    assert len({run.name for run in runs}) == 6
    # keys that share a last component keep their full names
    (run,) = expand({"model.dropout": ["0.1"], "eval.dropout": ["0"]}, parse_seeds("0"))
    assert run.name == "model.dropout-0.1_eval.dropout-0_seed-0"
    with pytest.raises(UserError, match="same run folder"):
        next(expand({"data.dataset": ["a/b", "a_b"]}, parse_seeds("0")))


def test_a_large_grid_states_its_size_and_needs_yes():
    grid = {"model.attention": ["flow", "softmax"]}
    check_size(grid, parse_seeds(f"1-{MAX_RUNS // 2}"), yes=False)
    with pytest.raises(UserError, match=r"1002 runs \(2 values of model.attention x 501 seeds\)"):
        check_size(grid, parse_seeds(f"0-{MAX_RUNS // 2}"), yes=False)
    check_size(grid, parse_seeds("0-100000000"), yes=True)


def test_a_grid_of_many_seeds_yields_its_first_run_at_once():
    runs = expand({}, parse_seeds("0-100000000000"))  # would not fit in memory as a list
    assert next(runs).name == "seed-0" and next(runs).name == "seed-1"


@pytest.mark.parametrize(
    "bad", ["../escape", "a/b", "..", ".", ".hidden", "", "a\\b", "/abs", "a\nb"]
)
def test_names_are_plain(bad):
    with pytest.raises(UserError, match=f"--name {re.escape(repr(bad))}: expected a plain"):
        check_name(bad, "--name")
    assert check_name("hopper-v2_lr.3", "--name") == "hopper-v2_lr.3"
    assert check_name("é" * (MAX_NAME_BYTES // 2), "--name")  # 200 bytes in UTF-8
    with pytest.raises(UserError, match="longer than"):
        check_name("é" * (MAX_NAME_BYTES // 2 + 1), "--name")


def test_grid_values_whose_run_names_do_not_fit_a_file_name_are_one_line(tmp_path):
    """They gave a traceback when the first run's folder was made, the manifest pending."""
    long = "x" * 180
    done = flowrl(
        "sweep", "--name", "long", "--out-dir", str(tmp_path), "--list",
        "--grid", f"eval.env_id=Pendulum-v1,{long}",
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "give run folder names of" in done.stderr and "use shorter values" in done.stderr
    assert not any(tmp_path.iterdir())  # no manifest, no folder
    # the longest that fits: the names are plain and the sweep lists them
    fits = "y" * (MAX_PREFIX_BYTES - len("env_id-"))
    listed = flowrl("sweep", "--name", "fits", "--out-dir", str(tmp_path), "--list",
                    "--grid", f"eval.env_id={fits}")  # fmt: skip
    assert "give run folder names" not in listed.stderr, listed.stderr
