"""What `--resume` may change: the policy, and the check that applies it.

A resumed run continues the checkpoint's weights, optimiser, scheduler, sampler and RNG
streams. Settings that those states depend on (the model, the data, the optimiser, the seed)
cannot change under them; settings that only say how long to train, what to log and how to
evaluate, or how the same computation runs, may change and take effect from the resumed step.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flowrl.errors import UserError
from flowrl.train.config import TrainConfig, dotted_settings

# Keys (or sections, ending in ".") that may differ from the checkpoint's on --resume.
CHANGEABLE_ON_RESUME = (
    "steps",
    "log_every",
    "checkpoint_every",
    "eval.",
    "device",
    "precision",
    "compile",
    "threads",
    "model.attention_backend",
    "data.download",
    "data.sampler",
)
# The run folder's own path: the same folder whatever the working directory spelled.
_FOLDER = ("name", "out_dir")


def changeable(key: str) -> bool:
    """Whether setting `key` (dotted) may differ from the checkpoint's on --resume."""
    return any(key == c or (c.endswith(".") and key.startswith(c)) for c in CHANGEABLE_ON_RESUME)


def changed_settings(cfg: TrainConfig, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (the checkpoint's value, cfg's)} for each setting that differs; a setting added
    after the checkpoint was written ran at its default there."""
    theirs = {**dotted_settings(asdict(TrainConfig())), **dotted_settings(saved)}
    ours = dotted_settings(cfg.to_dict())
    return {
        key: (theirs.get(key), value)
        for key, value in ours.items()
        if key not in _FOLDER and theirs.get(key) != value
    }


def check_resume(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    """A UserError naming each changed setting that --resume may not change (those the
    checkpoint's states depend on), with both values; the others apply from the resumed step."""
    refused = {k: v for k, v in changed_settings(cfg, saved).items() if not changeable(k)}
    if not refused:
        return
    sections = sorted({key.split(".")[0] for key in refused})
    listed = ", ".join(f"{k} ({old!r} there, {new!r} here)" for k, (old, new) in refused.items())
    allowed = ", ".join(c + "*" if c.endswith(".") else c for c in CHANGEABLE_ON_RESUME)
    raise UserError(
        f"--resume: the {' and '.join(sections)} settings differ from the checkpoint's: "
        f"{listed}; a resumed run keeps them (only {allowed} may change): "
        "start a new run under another name, or --overwrite"
    )
