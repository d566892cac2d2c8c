"""The memory benchmark's tables (flowrl/studies/memory_benchmark.yaml): what the file holds
is whole, and a broken copy is refused naming the file and the entry."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml

import flowrl  # noqa: F401  registers the envs
from flowrl.envs import COLLECTION_POLICIES
from flowrl.errors import UserError
from flowrl.studies.memory_tables import TABLES, read_tables

REPO = Path(__file__).resolve().parents[2]


def test_the_tables_name_what_exists():
    tables = read_tables()
    for task in tables.tasks.values():
        assert task.env_id in gym.registry and (REPO / task.config).is_file()
        assert task.policy is None or task.policy in COLLECTION_POLICIES
        assert task.dataset_id(30) != task.dataset_id(31)
    assert next(iter(tables.variants)) == "flow-episode"  # what --smoke trains
    assert tables.variants["flow-window"].window == 20
    assert tables.variants["flow-relu-episode"].recurrent
    assert not tables.variants["softmax-episode"].recurrent
    assert not tables.variants["flow-window"].recurrent
    multilength = [name for name, v in tables.variants.items() if v.multilength]
    assert multilength and all(name.count("-multilength") == 1 for name in multilength)
    assert set(tables.renamed.values()) <= set(multilength)  # old "-mixed" names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["variants"]["flow-window"].pop("window"), "variants.flow-window: a window"),
        (lambda d: d["variants"]["flow-episode"].update(heads=4), "unknown keys heads"),
        (lambda d: d["variants"]["flow-episode"].update(attention="lstm"), "attention='lstm'"),
        (lambda d: d["variants"]["flow-episode"].update(context="all"), "context 'all'"),
        (lambda d: d["tasks"]["passive"].pop("lengths"), "tasks.passive: "),
        (lambda d: d["tasks"]["minigrid"]["variants"].append("x"), "no variant 'x'"),
        (lambda d: d["renamed"].update(old="gone"), "renamed.old: no variant 'gone'"),
        (lambda d: d.pop("renamed"), "expected the keys tasks, variants and renamed"),
    ],
)
def test_a_broken_table_is_refused_naming_the_entry(tmp_path, change, message):
    doc = yaml.safe_load(TABLES.read_text())
    change(doc)
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match=message) as caught:
        read_tables(path)
    assert str(path) in str(caught.value)
