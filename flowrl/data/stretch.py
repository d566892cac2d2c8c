"""Time-stretched copies of episodes: corridors and hallways longer than the data's.

A step that leaves the observation as it found it, and pays nothing, is a step along a
stretch of the world that looks the same all the way (a T-Maze corridor, the middle of a
MiniGrid hallway, a push against a wall). Repeating it f times gives the episode the same
agent would have had in a world whose stretch is f times as long: the same observations in
the same order, the same actions and the same return. `stretch_dataset` adds such a copy of
every episode per factor, so an agent trains on longer hallways than the data holds
(`data.stretch`, docs/long-context.md).
"""

from __future__ import annotations

import numpy as np

from flowrl.data.episodes import Episode, EpisodeDataset
from flowrl.errors import UserError


def repeatable_steps(episode: Episode) -> np.ndarray:
    """(T,) bool: steps whose next observation equals their own and whose reward is 0 (the
    last step never: nothing follows it)."""
    obs = episode.observations
    same = np.zeros(len(episode), dtype=bool)
    same[:-1] = np.all(obs[1:] == obs[:-1], axis=1) & (episode.rewards[:-1] == 0)
    return same


def stretch_episode(episode: Episode, factor: int) -> Episode:
    """`episode` with each repeatable step taken `factor` times."""
    counts = np.where(repeatable_steps(episode), factor, 1)
    rows = np.repeat(np.arange(len(episode)), counts)
    return Episode(
        observations=episode.observations[rows],
        actions=episode.actions[rows],
        rewards=episode.rewards[rows],
        terminations=episode.terminations[rows],
        truncations=episode.truncations[rows],
    )


def check_factors(factors: list[int]) -> None:
    """A UserError naming `data.stretch` unless every factor is an integer >= 2."""
    for factor in factors:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise UserError(
                f"data.stretch={list(factors)}: each factor must be an integer >= 2, got {factor!r}"
            )


def stretch_tag(factors: list[int]) -> str:
    """What `stretch_dataset` appends to a dataset's name."""
    return f"[stretch {','.join(map(str, factors))}]"


def stretched_as(dataset: EpisodeDataset, factors: list[int]) -> bool:
    """Whether `dataset` is what `stretch_dataset(..., factors)` makes (always for none)."""
    return not factors or dataset.name.endswith(stretch_tag(factors))


def stretch_dataset(dataset: EpisodeDataset, factors: list[int]) -> EpisodeDataset:
    """`dataset`'s episodes, then one stretched copy of each per factor (none: `dataset`)."""
    check_factors(factors)
    if not factors:
        return dataset
    if not any(repeatable_steps(ep).any() for ep in dataset.episodes):
        raise UserError(
            f"data.stretch={list(factors)}: dataset {dataset.name!r} has no step that leaves "
            "its observation unchanged with reward 0, so there is nothing to stretch"
        )
    copies = [stretch_episode(ep, f) for f in factors for ep in dataset.episodes]
    return EpisodeDataset(
        dataset.name + stretch_tag(factors),
        dataset.episodes + copies,
        ref_min_score=dataset.ref_min_score,
        ref_max_score=dataset.ref_max_score,
        env_id=dataset.env_id,
        env_kwargs=dataset.env_kwargs,
        discrete_actions=dataset.discrete_actions,
    )
