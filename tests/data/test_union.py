"""`a+b` specs: the union of datasets, as D4RL's medium-expert is medium plus expert."""

from __future__ import annotations

import numpy as np
import pytest

from flowrl.data import load_dataset
from flowrl.errors import UserError


def test_union_holds_every_episode_of_both(tmp_path, make_raw_episodes, write_minari, write_d4rl):
    first = make_raw_episodes(np.random.default_rng(1))
    second = make_raw_episodes(np.random.default_rng(2), lengths=(3, 4), ends="Tt")
    write_minari("test/first-v0", first, ref_min_score=-1.0, ref_max_score=2.0)
    write_minari("test/second-v0", second, ref_min_score=-1.0, ref_max_score=2.0)
    joined = load_dataset("test/first-v0+test/second-v0")
    assert joined.num_episodes == len(first) + len(second)
    expected = [e["actions"] for e in first + second]
    for episode, actions in zip(joined.episodes, expected, strict=True):
        np.testing.assert_array_equal(episode.actions, actions)
    assert (joined.ref_min_score, joined.ref_max_score) == (-1.0, 2.0)
    states = np.concatenate([e["observations"][:-1] for e in first + second])
    np.testing.assert_allclose(joined.obs_mean, states.mean(0), rtol=1e-5, atol=1e-6)

    write_minari("test/third-v0", second, ref_min_score=0.0, ref_max_score=5.0)
    with pytest.raises(UserError, match="cannot join"):
        load_dataset("test/first-v0+test/third-v0")
