"""Discrete actions: the categorical head and its loss, greedy and sampled acting, the
evaluator in a T-Maze, checkpoints, and the errors around them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig, load_agent
from flowrl.cli import main
from flowrl.data import Episode, EpisodeDataset, WindowSampler, collect_dataset
from flowrl.errors import UserError
from flowrl.eval import evaluate

TMAZE = "flowrl/TMazePassive-v0"
LENGTH = 12  # episodes of LENGTH + 1 steps


@pytest.fixture(scope="module")
def tmaze(tmp_path_factory) -> EpisodeDataset:
    """A mixed-quality Passive T-Maze dataset, written as a Minari dataset and read back."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        return collect_dataset(
            TMAZE, "tmaze-noisy", episodes=24, dataset_id="test/tmaze-v0", seed=1,
            env_kwargs={"length": LENGTH, "noise_dims": 1}, progress=False,
        )  # fmt: skip


def small(**overrides) -> DecisionTransformerConfig:
    settings = {"embed_dim": 32, "n_layers": 2, "n_heads": 2, "context_len": 8, "dropout": 0.0}
    return DecisionTransformerConfig(**{**settings, **overrides})


def discrete_agent(
    dataset: EpisodeDataset, head_scale: float = 100.0, **overrides
) -> DecisionTransformerAgent:
    """An untrained agent set up on `dataset`, its head scaled by `head_scale`: large, the
    logits of different actions are far apart (no near-ties between acting paths); 1, the
    initial near-uniform distribution."""
    torch.manual_seed(0)
    agent = DecisionTransformerAgent(small(**overrides), return_scale=1.0)
    agent.setup(dataset)
    with torch.no_grad():
        agent.model.predict_action.weight.mul_(head_scale)
    agent.model.eval()
    return agent


def test_setup_builds_a_categorical_agent(tmaze):
    agent = discrete_agent(tmaze)
    cfg = agent.model.cfg
    assert cfg.discrete and cfg.act_dim == 4 and cfg.state_dim == 3
    assert agent.normalizer.discrete and agent.config.discrete is False  # the user's config
    one_hot = torch.eye(4)
    torch.testing.assert_close(agent.normalizer.actions(one_hot), one_hot)  # not scaled
    assert agent.normalizer.env_actions(one_hot[[2, 0]]).tolist() == [2, 0]
    # logits, not tanh-squashed actions
    batch = WindowSampler(tmaze, context_len=8, batch_size=16, seed=0).sample().to_torch()
    logits = agent.model(batch.states, batch.actions, batch.returns_to_go, batch.timesteps)
    assert logits.shape == (16, 8, 4) and logits.abs().max() > 1.0


def hand_cross_entropy(logits: np.ndarray, actions: np.ndarray, valid: np.ndarray) -> float:
    """Mean over real steps of -log softmax(logits)[action], in float64, step by step."""
    terms = []
    for b, k in zip(*np.nonzero(valid), strict=True):
        z = logits[b, k].astype(np.float64)
        log_z = np.log(np.exp(z - z.max()).sum()) + z.max()
        terms.append(log_z - z[actions[b, k]])
    return float(np.mean(terms))


def test_discrete_loss_is_cross_entropy_over_real_steps(tmaze):
    agent = discrete_agent(tmaze)
    batch = WindowSampler(tmaze, context_len=8, batch_size=32, seed=3).sample()
    assert not batch.valid.all(), "the windows need pads for this test"
    tensors = batch.to_torch()
    loss = agent.loss(tensors)
    norm = agent.normalizer
    logits = agent.model(
        norm.states(tensors.states),
        tensors.actions,
        norm.returns(tensors.returns_to_go),
        tensors.timesteps,
    )
    expected = hand_cross_entropy(logits.detach().numpy(), batch.actions.argmax(-1), batch.valid)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # pads change nothing: garbage in their states and returns
    pads = ~tensors.valid
    tensors.states[pads] = 1e3
    tensors.returns_to_go[pads] = -1e3
    assert agent.loss(tensors).item() == pytest.approx(loss.item(), rel=1e-6)
    # and it trains: the loss has gradients for the head
    loss.backward()
    assert agent.model.predict_action.weight.grad.abs().sum() > 0


def test_continuous_loss_is_still_the_mean_squared_error():
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            observations=rng.normal(size=(n, 3)),
            actions=rng.uniform(-2, 2, size=(n, 2)),
            rewards=rng.normal(size=n),
            terminations=np.eye(n, dtype=bool)[-1],
            truncations=np.zeros(n, bool),
        )
        for n in (5, 11, 7)
    ]
    dataset = EpisodeDataset("c", episodes)
    torch.manual_seed(0)
    agent = DecisionTransformerAgent(small(), return_scale=10.0)
    agent.setup(dataset)
    agent.model.eval()
    assert not agent.model.cfg.discrete and not agent.normalizer.discrete
    batch = WindowSampler(dataset, context_len=8, batch_size=8, seed=0).sample()
    t = batch.to_torch()
    norm = agent.normalizer
    scale = np.abs(np.concatenate([ep.actions for ep in episodes])).max(0)
    predicted = agent.model(
        norm.states(t.states), norm.actions(t.actions), norm.returns(t.returns_to_go), t.timesteps
    )
    predicted = predicted.detach().numpy().astype(np.float64)
    assert np.abs(predicted).max() <= 1.0  # tanh head
    target = batch.actions / scale
    expected = ((predicted - target) ** 2)[batch.valid].mean()
    assert agent.loss(t).item() == pytest.approx(expected, rel=1e-5)


def rollout(policy, steps: int, num_envs: int, seed: int = 0, resets=()) -> np.ndarray:
    """Random T-Maze-sized observations and rewards fed through `policy`; all its actions."""
    rng = np.random.default_rng(seed)
    policy.reset(np.ones(num_envs, bool), np.full(num_envs, 1.0), seeds=list(range(num_envs)))
    actions = []
    for t in range(steps):
        if t in resets:
            rows = np.zeros(num_envs, bool)
            rows[0] = True
            policy.reset(rows, np.full(num_envs, 0.5), seeds=[100] + [None] * (num_envs - 1))
        actions.append(policy.act(rng.integers(-1, 2, size=(num_envs, 3)).astype(np.float32)))
        policy.observe(rng.normal(size=num_envs) * 0.1)
    return np.stack(actions, 1)


@pytest.mark.parametrize("sample", [False, True])
def test_actions_are_integer_indices_and_their_one_hots_are_fed_back(tmaze, sample):
    agent = discrete_agent(tmaze)
    policy = agent.policy(3, 10, sample=sample)
    policy.reset(np.ones(3, bool), np.ones(3))
    for t in range(6):
        action = policy.act(np.zeros((3, 3), np.float32) + t)
        assert action.dtype == np.int64 and action.shape == (3,)
        assert ((action >= 0) & (action < 4)).all()
        fed = policy.actions[torch.arange(3), policy.t]  # the next action token
        np.testing.assert_array_equal(fed.numpy(), np.eye(4, dtype=np.float32)[action])
        policy.observe(np.zeros(3))


def test_greedy_takes_the_most_likely_action_and_sampling_follows_the_softmax(tmaze):
    agent = discrete_agent(tmaze)
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    with torch.no_grad():  # logits that do not depend on the input: log probs
        agent.model.predict_action.weight.zero_()
        agent.model.predict_action.bias.copy_(torch.as_tensor(np.log(probs)))
    M = 4000
    observations = np.zeros((M, 3), np.float32)
    greedy = agent.policy(M, 2)
    greedy.reset(np.ones(M, bool), np.ones(M))
    assert (greedy.act(observations) == 3).all()

    def draws(seed: int) -> np.ndarray:
        policy = agent.policy(M, 2, sample=True, seed=seed)
        policy.reset(np.ones(M, bool), np.ones(M))
        return policy.act(observations)

    first = draws(0)
    freq = np.bincount(first, minlength=4) / M
    assert np.abs(freq - probs).max() < 4 * np.sqrt(0.25 / M), freq  # 4 standard errors
    np.testing.assert_array_equal(draws(0), first)  # seeded
    assert not np.array_equal(draws(1), first)


@pytest.mark.parametrize("sample", [False, True])
def test_recurrent_acting_equals_recomputing_the_episode(tmaze, sample):
    agent = discrete_agent(tmaze, context_mode="episode", context_len=64)
    fast = rollout(agent.policy(3, 61, recurrent=True, sample=sample), 60, 3, resets=(25,))
    slow = rollout(agent.policy(3, 61, recurrent=False, sample=sample), 60, 3, resets=(25,))
    np.testing.assert_array_equal(fast, slow)
    assert fast.dtype == np.int64 and len(np.unique(fast)) > 1, "a policy that never varies"


def test_sampled_episodes_depend_on_their_seed_not_on_the_slot(tmaze):
    """Each sampling row restarts from its episode's seed: 1 or 3 envs give the same episodes."""
    agent = discrete_agent(tmaze, head_scale=1.0, context_mode="episode", context_len=64)
    with torch.no_grad():  # mostly right, so that how often it is not varies the returns
        agent.model.predict_action.bias.copy_(torch.tensor([0.85, 0.05, 0.05, 0.05]).log())
    kwargs = {"target_returns": [1.0], "episodes": 6, "sample_actions": True, "seed": 5}
    (one,) = evaluate(agent, num_envs=1, **kwargs)
    (three,) = evaluate(agent, num_envs=3, **kwargs)
    np.testing.assert_array_equal(one.returns, three.returns)
    assert len(np.unique(one.returns)) > 1, "sampled episodes should differ"
    (greedy,) = evaluate(agent, num_envs=3, **{**kwargs, "sample_actions": False})
    assert not np.array_equal(one.returns, greedy.returns)


@pytest.mark.parametrize("mode", ["window", "episode"])
def test_the_evaluator_runs_a_discrete_agent_in_a_tmaze(tmaze, mode):
    agent = discrete_agent(tmaze, context_mode=mode)
    for sample in (False, True):
        (result,) = evaluate(
            agent, target_returns=[1.0], episodes=4, num_envs=2, sample_actions=sample
        )
        np.testing.assert_array_equal(result.lengths, [LENGTH + 1] * 4)  # made with its kwargs
        # a return is the goal's 0 or 1 plus at most LENGTH penalties of -1/LENGTH
        assert ((result.returns >= -1.0 - 1e-6) & (result.returns <= 1.0 + 1e-6)).all()
    (longer,) = evaluate(agent, target_returns=[1.0], episodes=2, env_kwargs={"length": 40})
    np.testing.assert_array_equal(longer.lengths, [41, 41])


def test_checkpoint_round_trip_keeps_the_action_space(tmaze, tmp_path):
    agent = discrete_agent(tmaze, context_mode="episode", timestep_embedding="none")
    path = agent.save(tmp_path / "agent.pt")
    loaded = load_agent(path)
    assert loaded.model.cfg == agent.model.cfg and loaded.model.cfg.discrete
    assert loaded.normalizer.discrete and loaded.model.cfg.timestep_embedding == "none"
    actions = [rollout(a.policy(2, 21, sample=True), 20, 2) for a in (agent, loaded)]
    np.testing.assert_array_equal(actions[0], actions[1])


def test_continuous_agents_refuse_to_sample_and_discrete_ones_a_continuous_dataset(tmaze):
    continuous = DecisionTransformerConfig(state_dim=3, act_dim=4, embed_dim=8, n_heads=1)
    from flowrl.agents import DecisionTransformer, Normalizer

    agent = DecisionTransformerAgent.from_parts(
        DecisionTransformer(continuous),
        Normalizer.from_arrays(np.zeros(3), np.ones(3), np.ones(4), 1.0),
        env_id=TMAZE,
    )
    with pytest.raises(UserError, match="sampling actions needs a discrete agent"):
        agent.policy(1, 5, sample=True)
    with pytest.raises(UserError, match="sampling actions needs a discrete agent"):
        evaluate(agent, target_returns=[1.0], episodes=1, sample_actions=True)
    with pytest.raises(UserError, match="has discrete actions; the agent was built for continuous"):
        agent.setup(tmaze)
    with pytest.raises(ValueError, match="normaliser that agrees"):
        DecisionTransformerAgent.from_parts(
            DecisionTransformer(DecisionTransformerConfig(3, 4, discrete=True)), agent.normalizer
        )
    rng = np.random.default_rng(0)
    floats = Episode(rng.normal(size=(4, 3)), rng.normal(size=(4, 4)), np.zeros(4),
                     np.eye(4, dtype=bool)[-1], np.zeros(4, bool))  # fmt: skip
    with pytest.raises(UserError, match=r"model\.discrete=true but dataset 'f' has continuous"):
        DecisionTransformerAgent(DecisionTransformerConfig(discrete=True)).setup(
            EpisodeDataset("f", [floats])
        )
    with pytest.raises(UserError, match=r"model\.discrete='yes': expected true or false"):
        DecisionTransformerConfig(discrete="yes")


def test_cli_eval_sample_actions(tmaze, tmp_path, capsys):
    import json

    path = discrete_agent(tmaze).save(tmp_path / "agent.pt")
    out = tmp_path / "r.json"
    args = ["eval", "--checkpoint", str(path), "--episodes", "3", "--num-envs", "2"]
    assert main([*args, "--sample-actions", "--env-kwargs", "length=20", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["sample_actions"] and result["env_kwargs"] == {"length": 20, "noise_dims": 1}
    assert result["targets"]["1"]["length_mean"] == 21

    continuous = DecisionTransformerAgent(small(), return_scale=1.0)
    rng = np.random.default_rng(0)
    floats = Episode(rng.normal(size=(4, 3)), rng.normal(size=(4, 1)), np.zeros(4),
                     np.eye(4, dtype=bool)[-1], np.zeros(4, bool))  # fmt: skip
    continuous.setup(EpisodeDataset("f", [floats], env_id="Pendulum-v1"))
    path = continuous.save(tmp_path / "continuous.pt")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(path), "--sample-actions"]) == 2
    err = capsys.readouterr().err.strip()
    assert "sampling actions needs a discrete agent" in err and "\n" not in err


def test_checkpoints_from_before_discrete_actions_load_as_continuous(tmp_path):
    from flowrl.agents import DecisionTransformer, Normalizer

    cfg = DecisionTransformerConfig(state_dim=3, act_dim=2, embed_dim=8, n_heads=1)
    agent = DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg), Normalizer.from_arrays(np.zeros(3), np.ones(3), np.ones(2), 1.0)
    )
    state = agent.state_dict()
    del state["model_config"]["discrete"], state["model_config"]["timestep_embedding"]
    del state["normalizer"]["discrete"]
    loaded = DecisionTransformerAgent.from_state_dict(state)
    assert not loaded.model.cfg.discrete and not loaded.normalizer.discrete
    assert loaded.model.cfg.timestep_embedding == "learned"


def test_the_key_gate_penalty_adds_its_share_of_the_mean_gate_to_the_loss(tmaze):
    batch = WindowSampler(tmaze, context_len=8, batch_size=8, seed=3).sample().to_torch()
    settings = {"attention": "flow-relu", "key_gate": True}
    plain = discrete_agent(tmaze, **settings)
    penalised = discrete_agent(tmaze, **settings, key_gate_penalty=0.5)
    for agent in (plain, penalised):
        agent.model.train()
    base = plain.loss(batch)
    with_penalty = penalised.loss(batch)
    gate = penalised.model.key_gate_mean().item()
    assert 0.2 < gate < 0.8  # half open at the start
    assert with_penalty.item() == pytest.approx(base.item() + 0.5 * gate, rel=1e-5)
