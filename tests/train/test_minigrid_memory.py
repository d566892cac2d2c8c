"""Memory on MiniGrid-Memory, end to end: at size 7 the room's object is often behind the
agent at the start, and the end corridor is up to 12 steps later. An agent with the whole
episode as context (the library's default attention, the grid state encoder, the settings of
`configs/memory/minigrid.yaml`) learns to reach the matching object, while a window agent
that sees its last 2 steps stays at a coin flip: the success comes from memory.

`SEED` (environment variable FLOWRL_MINIGRID_TEST_SEED, default 0) seeds the model and the
training run; the seeds tried are listed on the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import collect_dataset
from flowrl.train import fit, load_config

pytest.importorskip("minigrid")

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("FLOWRL_MINIGRID_TEST_SEED", "0"))  # to replay the seeds tried


@pytest.fixture(scope="module")
def minigrid(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        yield collect_dataset(
            env_id="flowrl/MiniGridMemory-v0",
            env_kwargs={"size": 7},
            policy="minigrid-noisy",
            episodes=400,
            dataset_id="test/minigrid-memory-7-v0",
            seed=0,
            progress=False,
        )


def mean_return(dataset, tmp_path: Path, context_mode: str, context_len: int) -> float:
    settings = [f"model.context_mode={context_mode}", f"model.context_len={context_len}",
                "steps=800", f"seed={SEED}", f"out_dir={tmp_path}", f"name={context_mode}",
                "eval.episodes=100"]  # fmt: skip
    cfg = load_config(ROOT / "configs" / "memory" / "minigrid.yaml", settings)
    agent = DecisionTransformerAgent(cfg.model, return_scale=cfg.data.return_scale)
    (result,) = fit(agent, dataset, config=cfg, progress=False)["results"]
    return result["return_mean"]  # a match scores a little under 1, the other object 0


@pytest.mark.slow
def test_episode_context_finds_the_match_a_short_window_cannot(minigrid, tmp_path):
    """Seeds tried on an Intel Xeon, 2 cores, one torch thread, under load: 0 to 4 gave
    episode 0.98 and window 0.46 to 0.52 (seed 0 at 600 steps: 0.91 and 0.52); the bounds
    leave 0.18 and 0.13. About 50 s."""
    longest = max(len(ep) for ep in minigrid.episodes)
    episode = mean_return(minigrid, tmp_path, "episode", longest)
    window = mean_return(minigrid, tmp_path, "window", 2)
    print(f"seed {SEED}: episode {episode:.2f}, window {window:.2f}")
    assert episode >= 0.8, episode
    assert window <= 0.65, window  # ~0.5: without the object, a fixed or random pick
