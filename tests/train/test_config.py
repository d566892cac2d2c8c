"""Configuration files and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrl.errors import UserError
from flowrl.train.config import TrainConfig
from flowrl.train.config_checks import check_config
from flowrl.train.config_files import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_every_shipped_config_loads():
    assert len(CONFIGS) >= 20
    for path in CONFIGS:
        cfg = load_config(path)
        assert isinstance(cfg, TrainConfig), path


def test_quickstart_file_is_the_built_in_default():
    quickstart = next(p for p in CONFIGS if p.name == "quickstart.yaml")
    assert load_config(quickstart) == load_config(None) == TrainConfig()


def test_paper_settings_for_d4rl():
    cfg = load_config(next(p for p in CONFIGS if p.name == "hopper-medium-v2.yaml"))
    assert (cfg.model.embed_dim, cfg.model.n_layers, cfg.model.n_heads) == (256, 3, 4)
    assert (cfg.model.context_len, cfg.optim.batch_size, cfg.optim.warmup_steps) == (20, 64, 10000)
    assert cfg.eval.target_returns == [3600, 1800] and cfg.data.return_scale == 1000


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        None, ["optim.lr=3e-4", "model.attention=softmax", "eval.target_returns=[1,2]"]
    )
    assert cfg.optim.lr == 3e-4 and cfg.model.attention == "softmax"
    assert cfg.eval.target_returns == [1.0, 2.0]
    for bad, message in [
        (["optim.lrr=1"], "optim.lrr"),
        (["optim.lr=abc"], "optim.lr"),
        (["steps=0"], "steps=0"),
        (["model.embed_dim=30", "model.n_heads=4"], "divisible"),
        (["noequals"], "key=value"),
        (["log_every=0"], "log_every=0: expected a positive integer"),
        (["checkpoint_every=0"], "checkpoint_every=0"),
        (["checkpoint_every=-5"], "checkpoint_every=-5"),
        (["optim.lr=nan"], "optim.lr=nan: expected a finite positive number"),
        (["optim.lr=inf"], "optim.lr=inf"),
        (["model.dropout=1.0"], r"model.dropout=1.0: expected a number in \[0, 1\)"),
        (["model.dropout=-0.1"], "model.dropout=-0.1"),
        (["optim.betas=[0.9]"], "optim.betas=.0.9.: expected two numbers"),
        (["optim.betas=[0.9,0.99,0.999]"], "optim.betas"),
        (["optim.betas=[0.9,1.5]"], "optim.betas"),
        (["eval.target_returns=[nan]"], "eval.target_returns"),
        (["eval.max_steps=0"], "eval.max_steps=0"),
        (["eval.every=-1"], "eval.every=-1"),
        (["optim.grad_clip=0"], "optim.grad_clip=0"),
        (["eval.env_id=''"], "eval.env_id is empty"),
        (["model.attention_backend=chunkd"], "model.attention_backend='chunkd'"),
        (["model.attention=softmax", "model.attention_backend=triton"], "expected one of auto"),
        (["model.dropout=0", "model.max_timestep=0"], "model.max_timestep=0"),
        (["seed=-1"], "seed=-1: expected an integer >= 0"),
        (["eval.seed=-3"], "eval.seed=-3: expected an integer >= 0"),
        (["model.embed_dim=true"], "model.embed_dim"),
        (["steps=0x10"], "steps"),
        (["steps=1:30"], "steps"),
        (["steps=[1"], "--set 'steps=.1': malformed value"),
        (["name=.."], "name '..': expected a plain folder name"),
        (["name=a/b"], "name 'a/b': expected a plain folder name"),
        (["data.sampler=gpu"], "data.sampler"),
    ]:
        with pytest.raises(UserError, match=message):
            load_config(None, bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [1,\n", "malformed YAML at line 2"),
        ("- steps\n- 3\n", "expected a mapping of settings .* got a list"),
        ("hello\n", "expected a mapping of settings .* got a str"),
        ("steps: 0\n", "steps=0"),
    ],
    ids=["malformed", "list", "scalar", "bad-value"],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_empty_config_file_is_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    assert load_config(path) == TrainConfig()


def test_integers_are_base_10_and_booleans_true_or_false(tmp_path):
    """YAML 1.1 reads 010 as octal 8, 1:30 as 90 and `off` as False; settings do not."""
    cfg = load_config(None, ["steps=010", "eval.target_returns=[010,2e2]", "name=010"])
    assert (cfg.steps, cfg.eval.target_returns, cfg.name) == (10, [10.0, 200.0], "010")
    assert load_config(None, ["name=off", "compile=yes"]).name == "off"
    assert load_config(None, ["compile=yes"]).compile is True  # a boolean setting reads it
    path = tmp_path / "octal.yaml"
    path.write_text("steps: 010\nname: 1:30\nmodel:\n  embed_dim: 0064\n")
    cfg = load_config(path)
    assert (cfg.steps, cfg.name, cfg.model.embed_dim) == (10, "1:30", 64)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "steps", True),
        (None, "seed", 1.0),
        ("optim", "lr", True),
        ("optim", "betas", [True, 0.999]),
        ("model", "embed_dim", True),
        ("eval", "target_returns", [False]),
        (None, "name", "../x"),
        ("eval", "seed", -1),
    ],
)
def test_a_config_built_in_python_is_checked_too(section, key, value):
    """flowrl.fit takes a TrainConfig without OmegaConf's conversions: True is no integer."""
    cfg = TrainConfig()
    setattr(cfg if section is None else getattr(cfg, section), key, value)
    with pytest.raises(UserError, match=key):
        check_config(cfg)
