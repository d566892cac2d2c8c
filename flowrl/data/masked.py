"""Observation masks applied to a dataset recorded in the full env (docs/memory-tasks.md):
the env side, `flowrl/<Env>-P-v5` and `-V-v5`, is `flowrl.envs.masked`."""

from __future__ import annotations

from flowrl.data.episodes import Episode, EpisodeDataset
from flowrl.envs.masked import MASKED_ENVS, mask_dims, masked_env_id
from flowrl.errors import UserError


def mask_dataset(dataset: EpisodeDataset, mask: str) -> EpisodeDataset:
    """A copy of `dataset` whose observations keep only `mask`'s entries, and whose env id is
    the masked env's, so evaluation runs under the same mask."""
    if dataset.env_id is None:
        raise UserError(
            f"dataset {dataset.name!r} names no environment, so observation mask {mask!r} "
            f"cannot tell positions from velocities; masks exist for {', '.join(MASKED_ENVS)}"
        )
    dims = mask_dims(dataset.env_id, mask)
    expected = MASKED_ENVS[dataset.env_id][0]
    if dataset.obs_dim != expected:
        raise UserError(
            f"dataset {dataset.name!r} observes {dataset.obs_dim} numbers per step; mask "
            f"{mask!r} for {dataset.env_id} expects {expected}"
        )
    episodes = [
        Episode(
            observations=ep.observations[:, dims],
            actions=ep.actions,
            rewards=ep.rewards,
            terminations=ep.terminations,
            truncations=ep.truncations,
        )
        for ep in dataset.episodes
    ]
    return EpisodeDataset(
        f"{dataset.name}[{mask}]",
        episodes,
        ref_min_score=dataset.ref_min_score,
        ref_max_score=dataset.ref_max_score,
        env_id=masked_env_id(dataset.env_id, mask),
        env_kwargs=dataset.env_kwargs,
        discrete_actions=dataset.discrete_actions,
    )


def masked_as(dataset: EpisodeDataset, mask: str) -> bool:
    """Whether `dataset` is what the observation mask `mask` (none, P, V) makes of a dataset:
    for a mask, its env is a masked env of that mask."""
    if mask == "none":
        return True
    return dataset.env_id in {masked_env_id(env_id, mask) for env_id in MASKED_ENVS}
