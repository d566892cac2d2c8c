"""Fixtures shared across the test tree."""

from __future__ import annotations

import pytest

from flowrl.ops import FEATURE_MAPS


@pytest.fixture(params=list(FEATURE_MAPS))
def feature_map(request) -> str:
    """A test that takes it runs once per Flow-Attention feature map."""
    return request.param
