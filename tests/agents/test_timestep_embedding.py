"""`model.timestep_embedding`: learned (clamped at max_timestep - 1) or none, in every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.errors import UserError
from flowrl.train import load_config

S, A = 3, 4


def agent(embedding: str, mode: str, attention: str = "flow", discrete: bool = False):
    torch.manual_seed(2)
    cfg = DecisionTransformerConfig(
        state_dim=S, act_dim=A, embed_dim=32, n_layers=2, n_heads=2, attention=attention,
        context_mode=mode, context_len=6, max_timestep=8, timestep_embedding=embedding,
        discrete=discrete,
    )  # fmt: skip
    model = DecisionTransformer(cfg).eval()
    if discrete:
        with torch.no_grad():
            model.predict_action.weight.mul_(100.0)  # far-apart logits: no near-ties
    normalizer = Normalizer.from_arrays(
        np.zeros(S), np.ones(S), np.full(A, 2.0), 10.0, discrete=discrete
    )
    return DecisionTransformerAgent.from_parts(model, normalizer)


def rollout(policy, steps: int, num_envs: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    policy.reset(np.ones(num_envs, bool), np.full(num_envs, 20.0))
    actions = []
    for _ in range(steps):
        actions.append(policy.act(rng.normal(size=(num_envs, S))))
        policy.observe(rng.normal(size=num_envs))
    return np.stack(actions, 1)


def trajectory(T: int):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, T, S, generator=g),
        torch.rand(2, T, A, generator=g),
        torch.randn(2, T, generator=g),
        torch.arange(T).repeat(2, 1),
    )


def test_without_a_timestep_embedding_only_the_order_of_tokens_tells_time():
    none, learned = agent("none", "episode").model, agent("learned", "episode").model
    assert not hasattr(none, "embed_timestep")
    assert not any("embed_timestep" in name for name in none.state_dict())
    assert "embed_timestep.weight" in learned.state_dict()
    s, a, r, t = trajectory(10)
    later = t + 5000  # far beyond max_timestep
    torch.testing.assert_close(none(s, a, r, later), none(s, a, r, t))
    assert not torch.allclose(learned(s, a, r, t + 3), learned(s, a, r, t))
    # order still matters: causal attention sees only the past
    out = none(s, a, r, t)
    s2 = s.clone()
    s2[:, 5:] += 1.0
    torch.testing.assert_close(none(s2, a, r, t)[:, :5], out[:, :5])


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize(
    ("mode", "attention"), [("window", "flow"), ("window", "softmax"), ("episode", "flow")]
)
def test_acting_without_a_timestep_embedding(mode, attention, discrete):
    ag = agent("none", mode, attention, discrete)
    steps = 30  # past max_timestep = 8 and the window K = 6
    actions = rollout(ag.policy(2, steps + 1, recurrent=False), steps)
    dtype = np.int64 if discrete else np.float32
    assert actions.dtype == dtype and actions.shape == (2, steps) + (() if discrete else (A,))
    if mode == "episode":  # recurrent acting equals recomputing the episode
        fast = rollout(ag.policy(2, steps + 1, recurrent=True), steps)
        if discrete:
            np.testing.assert_array_equal(fast, actions)
        else:
            np.testing.assert_allclose(fast, actions, rtol=1e-4, atol=1e-4)


def test_timestep_embedding_config_errors():
    with pytest.raises(UserError, match=r"model\.timestep_embedding='sinusoidal': expected one of"):
        DecisionTransformerConfig(timestep_embedding="sinusoidal")
    with pytest.raises(UserError, match=r"model\.timestep_embedding='rotary'"):
        load_config(None, ["model.timestep_embedding=rotary"])
    with pytest.raises(UserError, match=r"model\.discrete"):
        load_config(None, ["model.discrete=maybe"])
    cfg = load_config(None, ["model.timestep_embedding=none"])
    assert cfg.model.timestep_embedding == "none" and not cfg.model.discrete
    assert DecisionTransformerConfig().timestep_embedding == "learned"
