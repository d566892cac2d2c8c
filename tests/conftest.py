"""Fixtures shared across the test tree."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n N`: the workers share the cores, so
    os.environ["OMP_NUM_THREADS"] = "1"  # one torch thread each, and in the processes they start

import pytest

from flowrl.data import EpisodeDataset, collect_dataset
from flowrl.ops import FEATURE_MAPS


@pytest.fixture(params=list(FEATURE_MAPS))
def feature_map(request) -> str:
    """A test that takes it runs once per Flow-Attention feature map."""
    return request.param


@pytest.fixture(scope="session")
def collect_apart(tmp_path_factory):
    """`collect_apart(**kwargs)`: `collect_dataset(**kwargs)` into a Minari folder of its own."""

    def collect(**kwargs) -> EpisodeDataset:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
            return collect_dataset(progress=False, **kwargs)

    return collect
