"""`model.state_encoder`: the grid encoder reads MiniGrid-Memory's raw codes (its states are
not standardised), trains with the discrete head, is checked where model settings are, and
checkpoints record it (those from before it load as "linear")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig, load_agent
from flowrl.agents.state_encoder import GridEncoder
from flowrl.data import Episode, EpisodeDataset, EpisodeSampler
from flowrl.envs.minigrid_memory import GRID_DIM, OBS_DIM
from flowrl.errors import UserError


@pytest.fixture(scope="module")
def minigrid(collect_apart):
    return collect_apart(
        env_id="flowrl/MiniGridMemory-v0",
        policy="minigrid-noisy",
        env_kwargs={"size": 7},
        episodes=60,
        dataset_id="test/minigrid-7-v0",
    )


def grid_agent(dataset: EpisodeDataset, **model) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    config = DecisionTransformerConfig(
        embed_dim=32, n_layers=1, state_encoder="grid", context_mode="episode", **model
    )
    agent = DecisionTransformerAgent(config, return_scale=1.0)
    agent.setup(dataset)
    return agent


def test_bad_state_encoder_settings():
    with pytest.raises(UserError, match=r"model\.state_encoder=.conv.: expected one of linear"):
        DecisionTransformerConfig(state_encoder="conv")
    with pytest.raises(UserError, match=r"state_encoder=grid reads .* 151 numbers, not model"):
        DecisionTransformerConfig(state_encoder="grid", state_dim=17)


def test_grid_states_pass_unscaled_linear_ones_are_standardised(minigrid):
    obs = torch.as_tensor(np.concatenate([ep.observations for ep in minigrid.episodes]))
    grid = grid_agent(minigrid, context_len=64)
    assert isinstance(grid.model.embed_state, GridEncoder)
    torch.testing.assert_close(grid.normalizer.states(obs), obs)
    linear = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=32, n_layers=1))
    linear.setup(minigrid)
    assert not torch.equal(linear.normalizer.states(obs), obs)
    assert isinstance(linear.model.embed_state, torch.nn.Linear)


def test_the_encoder_reads_each_cells_codes():
    encoder = GridEncoder(16)
    obs = torch.zeros(2, OBS_DIM)
    obs[:, 0:3] = torch.tensor([5.0, 1.0, 0.0])  # a green key in cell 0
    obs[1, 0] = 6.0  # a green ball instead
    obs[:, GRID_DIM] = 1.0  # facing east
    out = encoder(obs)
    assert out.shape == (2, 16) and not torch.allclose(out[0], out[1])
    out[1].sum().backward()  # the ball's embedding learns, the key's does not here
    object_grad = encoder.codes[0].weight.grad
    assert object_grad[6].abs().sum() > 0 and object_grad[5].abs().sum() == 0


def test_grid_agent_refuses_what_it_cannot_read(minigrid):
    def dataset(observations: np.ndarray) -> EpisodeDataset:
        n = len(observations)
        episode = Episode(observations, np.zeros(n, np.int64), np.zeros(n), *[np.eye(n)[-1]] * 2)
        return EpisodeDataset("codes", [episode], discrete_actions=3)

    codes = np.concatenate([ep.observations for ep in minigrid.episodes[:2]])
    with pytest.raises(UserError, match="grid entries are not integer codes"):
        grid_agent(dataset(codes + 0.5), context_len=64)
    bad = codes.copy()
    bad[0, 1] = 9.0  # colour 9: minigrid has 6
    with pytest.raises(UserError, match=r"colour codes span 0\.\.9, outside 0\.\.5"):
        grid_agent(dataset(bad), context_len=64)
    with pytest.raises(UserError, match=r"151 numbers, not model\.state_dim=150"):
        grid_agent(dataset(codes[:, 1:]), context_len=64)


def test_grid_encoder_and_discrete_head_train(minigrid):
    agent = grid_agent(minigrid, context_len=64, dropout=0.0)
    sampler = EpisodeSampler(minigrid, max_len=64, batch_size=16, seed=0)
    optimizer = torch.optim.Adam(agent.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = agent.loss(sampler.sample().to_torch())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.9  # about ln 3: no idea which of the 3 actions comes
    assert np.mean(losses[-5:]) < 0.6 * losses[0], losses


def test_checkpoints_record_the_encoder(minigrid, tmp_path):
    agent = grid_agent(minigrid, context_len=64)
    loaded = load_agent(agent.save(tmp_path / "grid.pt"))
    assert loaded.model.cfg.state_encoder == "grid"
    obs = torch.as_tensor(minigrid.episodes[0].observations[:1])
    torch.testing.assert_close(loaded.model.embed_state(obs), agent.model.embed_state(obs))
    torch.testing.assert_close(loaded.normalizer.obs_std, torch.ones(OBS_DIM))


def test_checkpoints_from_before_state_encoders_load_as_linear(minigrid):
    agent = DecisionTransformerAgent(DecisionTransformerConfig(embed_dim=16, n_layers=1))
    agent.setup(minigrid)
    state = agent.state_dict()
    del state["model_config"]["state_encoder"]
    loaded = DecisionTransformerAgent.from_state_dict(state)
    assert loaded.model.cfg.state_encoder == "linear"
    assert isinstance(loaded.model.embed_state, torch.nn.Linear)
