"""The MiniGrid-Memory probe (flowrl.studies.minigrid_probe): the oracle's decision is the turn
that tells the two objects apart, the probe's readings on tiny untrained agents, and the
rollout outcomes of agents whose actions are fixed."""

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
from flowrl.envs.minigrid_memory import FORWARD, LEFT, N_ACTIONS, OBS_DIM, MiniGridMemory
from flowrl.envs.minigrid_policies import MiniGridOracle, distances, next_pose
from flowrl.studies.minigrid_probe import (
    OUTCOMES,
    oracle_decision,
    probe_minigrid,
    probe_sweep,
    rollout_outcomes,
)

pytest.importorskip("minigrid")


def grid_agent(mode: str = "episode", K: int = 64, action: int | None = None):
    """A tiny untrained grid agent; with `action`, one whose every choice is that action."""
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=OBS_DIM, act_dim=N_ACTIONS, discrete=True, embed_dim=16, n_layers=2,
        n_heads=2, attention="flow-relu", context_mode=mode, context_len=K,
        timestep_embedding="none", state_encoder="grid", dropout=0.0,
    )  # fmt: skip
    model = DecisionTransformer(cfg).eval()
    if action is not None:
        with torch.no_grad():
            model.predict_action.weight.zero_()
            model.predict_action.bias.copy_(torch.eye(N_ACTIONS)[action] * 10)
    normalizer = Normalizer.from_arrays(
        np.zeros(OBS_DIM), np.ones(OBS_DIM), np.ones(N_ACTIONS), 1.0, discrete=True
    )
    return DecisionTransformerAgent.from_parts(model, normalizer)


@pytest.mark.parametrize(("size", "look"), [(7, "nearest"), (13, "nearest"), (13, "up-close")])
def test_the_decision_is_where_the_two_goals_part_and_follows_the_look(size, look):
    for seed in range(8):
        decision = oracle_decision(size, seed, look)
        observations, actions, right, away = (
            decision.observations,
            decision.actions,
            decision.right,
            decision.away,
        )
        assert right != away and len(observations) == len(actions) + 1
        assert 0 <= decision.seen_at <= len(actions)
        assert decision.room_object in ("key", "ball")
        # replayed: at the decision, `right` is a shortest step towards the match and not
        # towards the other object, `away` the other way round
        env = MiniGridMemory(size=size)
        observation, _ = env.reset(seed=seed)
        room = env.unwrapped.height // 2 - 1
        in_view = [env.unwrapped.agent_sees(1, room)]  # minigrid's own test of the view
        cells = [tuple(env.unwrapped.agent_pos)]
        for action in actions:
            observation, *_ = env.step(int(action))
            in_view.append(env.unwrapped.agent_sees(1, room))
            cells.append(tuple(env.unwrapped.agent_pos))
        if look == "up-close":  # it stood next to the room's object on the way
            assert min(abs(x - 1) + abs(y - room) for x, y in cells) == 1
        assert np.array_equal(observation, observations[-1])
        assert np.array_equal(decision.in_view, in_view) and decision.in_view[decision.seen_at]
        oracle = MiniGridOracle(env, look)
        oracle.reset(np.random.default_rng(seed))
        grid = env.unwrapped
        pose = (int(grid.agent_pos[0]), int(grid.agent_pos[1]), int(grid.agent_dir))
        for goal, towards, other in ((grid.success_pos, right, away),
                                     (grid.failure_pos, away, right)):  # fmt: skip
            free = oracle.free | {tuple(goal)}
            dist = distances({(*goal, d) for d in range(4)}, free)
            assert dist[next_pose(pose, towards, free)] == dist[pose] - 1
            assert dist[next_pose(pose, other, free)] >= dist[pose]


@pytest.mark.parametrize("mode", ["episode", "window"])
def test_probe_reports_its_readings(mode):
    result = probe_minigrid(grid_agent(mode, K=4), size=9, seeds=range(5))
    assert result["size"] == 9 and result["episodes"] == 5
    assert 0 <= result["correct"] <= 1 and 0 <= result["p_correct"] <= 1
    assert np.isfinite(result["margin"]) and result["steps_since_seen"] > 0
    assert set(result["correct_by_object"]) <= {"key", "ball"}
    if mode == "window":  # the memory readings are of whole-episode contexts only
        assert "memory_weight" not in result
        return
    weight, loudness = np.array(result["memory_weight"]), np.array(result["hallway_key_norm"])
    silent = np.array(result["silent_keys"])
    assert weight.shape == loudness.shape == silent.shape == (2, 2)  # (blocks, heads)
    assert ((weight > 0) & (weight < 1)).all() and (loudness > 0).all()
    assert ((silent >= 0) & (silent < 1)).all()


def test_silent_keys_reads_keys_that_no_query_can_read():
    agent = grid_agent("episode", K=4)
    attention = agent.model.blocks[0].attn
    E = attention.qkv.in_features
    with torch.no_grad():  # the first block's keys all negative: ReLU features all 0
        attention.qkv.weight[E : 2 * E].zero_()
        attention.qkv.bias[E : 2 * E].fill_(-1.0)
    silent = np.array(probe_minigrid(agent, size=9, seeds=range(3))["silent_keys"])
    assert (silent[0] == 1).all() and (silent[1] < 1).all()


def test_an_agent_without_a_preference_has_margin_zero():
    agent = grid_agent(action=LEFT)  # every logit but LEFT's equal: the two turns tie
    agent.model.predict_action.bias.data.zero_()
    result = probe_minigrid(agent, size=7, seeds=range(4))
    assert (
        result["margin"] == 0
        and result["correct"] == 0
        and result["p_correct"] == pytest.approx(1 / 3)
    )


@pytest.mark.parametrize("action", [LEFT, FORWARD])
def test_an_agent_that_never_reaches_an_object_times_out(action):
    # turning on the spot, or walking east into the end wall, never ends an episode
    result = rollout_outcomes(grid_agent(action=action), size=7, seeds=range(3))
    assert result == {"size": 7, "episodes": 3, "match": 0, "wrong_seen": 0,
                      "wrong_unseen": 0, "timeout": 3}  # fmt: skip


def test_sweep_rows_per_run_and_factor(tmp_path):
    sweep = tmp_path / "minigrid-L7-flow-relu-episode"
    for seed in (0, 1):
        grid_agent().save(sweep / "runs" / f"seed-{seed}" / "checkpoints" / "last.pt")
    rows = probe_sweep(sweep, 7, [1, 2], range(2))
    assert [(r["run"].split("/")[1], r["factor"], r["size"]) for r in rows] == [
        ("seed-0", 1, 7), ("seed-0", 2, 11), ("seed-1", 1, 7), ("seed-1", 2, 11)
    ]  # fmt: skip
    assert all(sum(r[key] for key in OUTCOMES) == 2 for r in rows)
