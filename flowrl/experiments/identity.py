"""A run's identity: what it trains and with which seed, whatever its folder is called."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flowrl.train.config import dotted_settings

# Settings that name or place a run without changing what it trains.
PLACEMENT_KEYS = ("name", "out_dir")


def identity(config: dict[str, Any]) -> str:
    """A hash of the resolved settings (nested or flat, as config.yaml or `to_dict` give
    them) without the run's name and output folder: equal for two runs that train the same
    thing with the same seed."""
    flat = {k: v for k, v in dotted_settings(config).items() if k not in PLACEMENT_KEYS}
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
