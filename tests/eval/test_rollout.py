"""The evaluator in real Gymnasium environments: reproducible whatever M, scores, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flowrl.eval.rollout as rollout
from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
)
from flowrl.cli import main
from flowrl.errors import DataWarning, UserError
from flowrl.eval import TargetResult, VideoUnavailable, evaluate, record_videos

HOPPER_REF = (-20.272305, 3234.3)  # D4RL's random and expert Hopper returns


def agent(
    env_id: str, state_dim: int, act_dim: int, mode: str = "window"
) -> DecisionTransformerAgent:
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(
        state_dim=state_dim,
        act_dim=act_dim,
        embed_dim=16,
        n_layers=1,
        n_heads=1,
        context_mode=mode,
        context_len=5,
    )
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(
            np.zeros(state_dim, np.float32),
            np.ones(state_dim, np.float32),
            np.ones(act_dim, np.float32),
            100.0,
        ),
        dataset="d",
        env_id=env_id,
        ref_min_score=HOPPER_REF[0],
        ref_max_score=HOPPER_REF[1],
        target_returns=[-400.0],
    )


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("mode", ["window", "episode"])
def test_results_do_not_depend_on_the_number_of_envs(mode):
    """Hopper episodes terminate at different steps, so with M = 3 slots go idle and get
    stepped after their env ended (no warning, no error). Float32 matmuls batched over 1 or
    3 rows round differently in the last bits, so returns match to 1e-6, not bitwise; the
    episodes themselves differ by far more than that."""
    ag = agent("Hopper-v5", 11, 3, mode)
    one, three = (
        evaluate(ag, target_returns=[50.0, 300.0], episodes=2, num_envs=m, seed=7) for m in (1, 3)
    )
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a.lengths, b.lengths)
        np.testing.assert_allclose(a.returns, b.returns, rtol=1e-6)
        assert abs(a.returns[0] - a.returns[1]) > 0.1  # two seeds, two episodes
        assert a.normalized is not None
        np.testing.assert_allclose(a.normalized, 100 * (a.returns + 20.272305) / 3254.572305)
    (shifted,) = evaluate(ag, target_returns=[50.0], episodes=1, num_envs=1, seed=8)
    np.testing.assert_allclose(shifted.returns, one[0].returns[1:], rtol=1e-6)


def test_more_envs_than_episodes():
    ag = agent("Pendulum-v1", 3, 1)
    (few,) = evaluate(ag, target_returns=[-200.0], episodes=2, num_envs=1, max_steps=30)
    (many,) = evaluate(ag, target_returns=[-200.0], episodes=2, num_envs=5, max_steps=30)
    np.testing.assert_array_equal(many.lengths, [30, 30])
    np.testing.assert_allclose(many.returns, few.returns, rtol=1e-6)


def test_a_module_qualified_env_id_evaluates_as_the_plain_one():
    """`module:Env-v0` (gym.make imports the module first) reaches every spec lookup: the
    episode limit and the cut-episode warning's own-limit note."""
    kwargs = dict(target_returns=[-200.0], episodes=2, num_envs=2, max_steps=30)
    (plain,) = evaluate(agent("Pendulum-v1", 3, 1), **kwargs)
    with pytest.warns(DataWarning, match="its own limit is 200 steps"):
        (qualified,) = evaluate(agent("gymnasium.envs.classic_control:Pendulum-v1", 3, 1), **kwargs)
    np.testing.assert_array_equal(qualified.lengths, [30, 30])
    np.testing.assert_allclose(qualified.returns, plain.returns, rtol=1e-6)


def test_async_envs_give_the_sync_results():
    """Worker-process envs (real subprocesses) run the same seeded episodes."""
    ag = agent("Hopper-v5", 11, 3, "episode")
    sync, spawned = (
        evaluate(ag, target_returns=[50.0], episodes=3, num_envs=2, seed=3, vectorization=mode)
        for mode in ("sync", "async")
    )
    np.testing.assert_array_equal(spawned[0].lengths, sync[0].lengths)
    np.testing.assert_allclose(spawned[0].returns, sync[0].returns, rtol=1e-6)


def test_unknown_vectorization_is_a_user_error():
    with pytest.raises(UserError, match="vectorization='threads'"):
        evaluate(agent("Pendulum-v1", 3, 1), target_returns=[0.0], vectorization="threads")


def test_normalized_score_arithmetic():
    ag = agent("Hopper-v5", 11, 3)
    score = ag.normalized_score(np.array([3234.3, -20.272305, 1607.0138475, 6488.872305]))
    np.testing.assert_allclose(score, [100.0, 0.0, 50.0, 200.0], atol=1e-9)
    result = TargetResult(3600.0, np.array([3234.3, -20.272305]), np.array([1000, 20]), None)
    result.normalized = ag.normalized_score(result.returns)
    summary = result.summary()
    assert summary["normalized_mean"] == pytest.approx(50.0)
    assert summary["normalized_std"] == pytest.approx(50.0)
    assert summary["length_mean"] == 510.0
    ag.ref_max_score = None
    assert ag.normalized_score(result.returns) is None


def test_envs_are_closed_when_evaluation_fails(monkeypatch):
    made = []

    def make_envs(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    real = rollout.make_envs
    monkeypatch.setattr(rollout, "make_envs", make_envs)
    with pytest.raises(UserError, match="observations of size 11 in the agent, 3 in the env"):
        evaluate(agent("Pendulum-v1", 11, 3), target_returns=[1.0], episodes=1, num_envs=2)
    assert len(made) == 1 and made[0].closed


@pytest.fixture
def checkpoint(tmp_path):
    def save(env_id: str) -> str:
        path = tmp_path / "agent.pt"
        torch.save({"agent": agent(env_id, 3, 1).state_dict()}, path)
        return str(path)

    return save


@pytest.mark.parametrize(
    ("env_id", "extra", "message"),
    [
        ("NoSuchEnv-v0", [], "cannot make environment 'NoSuchEnv-v0'"),
        ("Pendulum-v1", ["--env", "Bogus/Nope-v3"], "cannot make environment 'Bogus/Nope-v3'"),
        ("Pendulum-v1", ["--env", "Hopper-v5"], "observations of size 3 in the agent, 11"),
    ],
)
def test_eval_with_an_env_that_cannot_be_used_exits_cleanly(
    checkpoint, capsys, env_id, extra, message
):
    code = main(["eval", "--checkpoint", checkpoint(env_id), "--episodes", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("flowrl eval: error: ") and message in err
    assert "\n" not in err


def test_video_is_recorded_or_skipped_with_a_reason(checkpoint, capsys, tmp_path):
    args = ["eval", "--checkpoint", checkpoint("Pendulum-v1"), "--episodes", "1"]
    code = main([*args, "--max-steps", "5", "--video", str(tmp_path / "v")])
    out, err = capsys.readouterr()
    assert code == 0 and "target" in out
    try:
        record_videos(agent("Pendulum-v1", 3, 1), tmp_path / "w", target_returns=[1.0])
    except VideoUnavailable as reason:
        assert err.splitlines()[-1] == f"flowrl eval: video skipped: {reason}"
    else:
        assert "wrote 1 videos" in out
        assert (tmp_path / "v" / "target--400" / "flowrl-episode-0.mp4").is_file()
