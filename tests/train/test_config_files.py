"""Config files composed from a base: `defaults:` lists, what each file holds, and the
errors of a broken composition."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from flowrl.errors import UserError
from flowrl.train.config import TrainConfig
from flowrl.train.config_checks import check_config
from flowrl.train.config_files import composed_yaml, config_layers, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_each_config_file_loads_and_validates(path):
    cfg = load_config(path)
    check_config(cfg)  # what the trainer checks again: nothing the loader let through fails
    assert isinstance(cfg, TrainConfig)


def own_leaves(mapping: dict, prefix: str = "") -> dict[str, object]:
    leaves = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            leaves |= own_leaves(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_a_file_with_defaults_holds_only_what_differs_from_them(path):
    *bases, (_, own) = config_layers(path)
    if not bases:
        return
    inherited = OmegaConf.structured(TrainConfig)
    for _, mapping in bases:
        inherited = OmegaConf.merge(inherited, mapping)
    for key, value in own_leaves(own).items():
        assert OmegaConf.select(inherited, key) != value, f"{path}: {key} repeats its base"


def test_the_papers_configs_share_one_base():
    d4rl = [p for p in CONFIGS if p.parent.name in ("d4rl", "minari", "zoo")]
    assert len(d4rl) >= 20
    base = ROOT / "configs" / "base" / "decision-transformer.yaml"
    for path in d4rl:
        assert config_layers(path)[0][0].resolve() == base.resolve(), path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_merge_in_order_then_the_file_then_overrides(tmp_path):
    write(tmp_path / "base" / "a.yaml", "steps: 10\nseed: 1\nmodel: {embed_dim: 32}\n")
    write(tmp_path / "base" / "b.yaml", "defaults: [a.yaml]\nseed: 2\n")
    top = write(tmp_path / "run.yaml", "defaults: [base/b.yaml]\nsteps: 20\n")
    cfg = load_config(top, ["model.n_heads=4"])
    assert (cfg.steps, cfg.seed, cfg.model.embed_dim, cfg.model.n_heads) == (20, 2, 32, 4)


def test_a_diamond_merges_its_shared_base_once_before_both_sides(tmp_path):
    """run -> [b, c], b -> base, c -> base: base, b, c, run; base never overrides b."""
    write(tmp_path / "base.yaml", "steps: 20\nseed: 1\nlog_every: 5\n")
    write(tmp_path / "b.yaml", "defaults: [base.yaml]\nsteps: 30\nlog_every: 6\n")
    write(tmp_path / "c.yaml", "defaults: [base.yaml]\nlog_every: 7\n")
    top = write(tmp_path / "run.yaml", "defaults: [b.yaml, c.yaml]\nseed: 3\n")
    assert [p.name for p, _ in config_layers(top)] == ["base.yaml", "b.yaml", "c.yaml", "run.yaml"]
    cfg = load_config(top)
    assert (cfg.steps, cfg.log_every, cfg.seed) == (30, 7, 3)
    assert yaml.safe_load(composed_yaml(top))["steps"] == 30


def test_broken_compositions_name_the_file(tmp_path):
    missing = write(tmp_path / "missing.yaml", "defaults: [nowhere.yaml]\n")
    with pytest.raises(UserError, match=r"nowhere\.yaml does not exist \(in the defaults of .*"):
        load_config(missing)
    write(tmp_path / "x.yaml", "defaults: [y.yaml]\n")
    write(tmp_path / "y.yaml", "defaults: [x.yaml]\n")
    with pytest.raises(UserError, match=r"x\.yaml: its defaults come back to it"):
        load_config(tmp_path / "x.yaml")
    with pytest.raises(UserError, match=r"defaults='base.yaml': expected a list"):
        load_config(write(tmp_path / "str.yaml", "defaults: base.yaml\n"))
    bad_base = write(tmp_path / "bad.yaml", "optim: {lrr: 1}\n")
    top = write(tmp_path / "top.yaml", "defaults: [bad.yaml]\n")
    with pytest.raises(UserError, match=rf"bad config in {bad_base}: optim\.lrr"):
        load_config(top)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_the_composed_copy_loads_the_same_anywhere(path, tmp_path):
    """What a sweep keeps as its base.yaml: the defaults merged in, no relative paths left."""
    copy = tmp_path / "elsewhere" / "base.yaml"
    copy.parent.mkdir()
    copy.write_text(composed_yaml(path))
    assert "defaults" not in yaml.safe_load(copy.read_text())
    assert load_config(copy) == load_config(path)
