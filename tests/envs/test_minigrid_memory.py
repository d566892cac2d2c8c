"""MiniGrid-Memory: the flowrl env (observation layout, 3 actions, kwargs in the dataset's
env spec), the scripted oracle (always the match, and only after looking) and the noisy
recipe (a wrong pick scores 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.envs import MemoryEnv

import flowrl  # noqa: F401  registers the envs
from flowrl.cli import main
from flowrl.data import collect_dataset
from flowrl.envs import make_collection_policy
from flowrl.envs.minigrid_memory import CELL_CODES, GRID_DIM, OBS_DIM, room_object_cell
from flowrl.envs.minigrid_policies import MiniGridNoisy, MiniGridOracle
from flowrl.errors import UserError
from tests.timeouts import scaled

ENV_ID = "flowrl/MiniGridMemory-v0"
REPO = Path(__file__).resolve().parents[2]


def run_episode(env: gym.Env, policy, seed: int, rng: np.random.Generator) -> dict:
    """One episode: its return, end, and whether the room's object was in view (minigrid's
    own `agent_sees`) before the agent first stood in the junction column."""
    obs, _ = env.reset(seed=seed)
    policy.reset(rng)
    base = env.unwrapped
    room, junction_x = (1, base.height // 2 - 1), base.success_pos[0]
    seen_at_start = seen = base.agent_sees(*room)
    seen_before_junction = None
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += reward
        if seen_before_junction is None and base.agent_pos[0] == junction_x:
            seen_before_junction = seen
        seen = seen or base.agent_sees(*room)
    return {
        "return": total,
        "terminated": terminated,
        "seen_at_start": seen_at_start,
        "seen_before_junction": seen_before_junction,
        "steps": base.step_count,
        "max_steps": base.max_steps,
    }


def test_code_counts_are_minigrids():
    assert (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)) == CELL_CODES


@pytest.mark.parametrize("size, random_length", [(7, False), (13, True), (31, False)])
def test_make_with_size_and_random_length(size, random_length):
    env = gym.make(ENV_ID, size=size, random_length=random_length)
    assert env.spec.kwargs == {"size": size, "random_length": random_length}
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.observation_space.shape == (OBS_DIM,) == (151,)
    base = env.unwrapped
    assert isinstance(base, MemoryEnv) and (base.width, base.random_length) == (size, random_length)
    assert base.max_steps == 5 * size**2
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    # the layout: minigrid's image flattened in C order, then the direction one-hot
    raw = base.gen_obs()
    np.testing.assert_array_equal(obs[:GRID_DIM].reshape(7, 7, 3), raw["image"])
    np.testing.assert_array_equal(obs[GRID_DIM:], np.eye(4)[raw["direction"]])
    obs, *_ = env.step(1)  # right: from east to south
    np.testing.assert_array_equal(obs[GRID_DIM:], [0, 1, 0, 0])


def test_registered_defaults():
    env = gym.make(ENV_ID)
    assert env.spec.kwargs == {"size": 13, "random_length": False}


def test_the_four_dropped_actions_change_nothing():
    """Why Discrete(3) loses nothing: pickup, drop, toggle and done leave the agent, the grid
    and the episode as they were, wherever the agent stands (all but the step counter)."""
    rng = np.random.default_rng(0)
    for seed in range(30):
        env = MemoryEnv(size=13, random_length=True)
        env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 15))):  # somewhere along a random walk
            _, _, terminated, _, _ = env.step(int(rng.integers(3)))
            if terminated:
                break
        else:
            for action in (3, 4, 5, 6):
                before = (tuple(env.agent_pos), env.agent_dir, env.grid.encode().tobytes())
                _, reward, terminated, truncated, _ = env.step(action)
                after = (tuple(env.agent_pos), env.agent_dir, env.grid.encode().tobytes())
                assert after == before and reward == 0 and not terminated and not truncated
                assert env.carrying is None


def test_bad_env_settings():
    for kwargs, match in [
        ({"size": 8}, "size=8: expected an odd integer >= 7"),
        ({"size": 5}, "size=5"),
        ({"size": True}, "size=True"),
        ({"random_length": "yes"}, "random_length='yes'"),
        ({"max_steps": 0}, "max_steps=0"),
    ]:
        with pytest.raises(UserError, match=match):
            gym.make(ENV_ID, **kwargs)
    env = gym.make(ENV_ID, size=7)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"integers 0\.\.2"):
        env.step(3)


def test_without_minigrid_flowrl_imports_and_the_error_names_the_extra():
    """A Python where `import minigrid` fails (sys.modules entry None)."""
    code = (
        "import sys; sys.modules['minigrid'] = None\n"
        "import gymnasium as gym, flowrl\n"
        "from flowrl.errors import UserError\n"
        "try:\n"
        f"    gym.make('{ENV_ID}')\n"
        "except UserError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert 'pip install -e ".[minigrid]"' in out.stdout


@pytest.mark.parametrize("size", [7, 13, 31])
@pytest.mark.parametrize("random_length", [False, True])
def test_oracle_looks_then_reaches_the_match(size, random_length):
    env = gym.make(ENV_ID, size=size, random_length=random_length)
    oracle = make_collection_policy("minigrid-oracle", env)
    assert type(oracle) is MiniGridOracle
    rng = np.random.default_rng(0)
    episodes = [run_episode(env, oracle, seed, rng) for seed in range(60)]
    for ep in episodes:
        assert ep["terminated"] and ep["return"] == pytest.approx(
            1 - 0.9 * ep["steps"] / ep["max_steps"]
        )
        assert ep["seen_before_junction"]  # it looked before it could commit
    if size > 7:  # starts facing away from an object out of view: the oracle turned back
        assert sum(not ep["seen_at_start"] for ep in episodes) >= 10


def test_oracle_takes_the_shortest_route_when_it_sees_the_object_at_once():
    """From the room's west wall facing east the object is in view at step 0: the oracle walks
    straight to the junction, turns once and steps next to the match."""
    env = gym.make(ENV_ID, size=13)
    oracle = MiniGridOracle(env)
    rng = np.random.default_rng(0)
    lengths = {}
    for seed in range(200):
        env.reset(seed=seed)
        x = int(env.unwrapped.agent_pos[0])
        if x == 1:
            lengths[seed] = run_episode(env, oracle, seed, rng)["steps"]
    assert lengths and set(lengths.values()) == {10 + 1 + 1}  # x 1 -> 11, turn, forward


@pytest.mark.parametrize("random_length", [False, True])
def test_up_close_oracle_walks_into_the_room_before_it_commits(random_length):
    """The other look: every episode goes next to the room's object and faces it, then to the
    match, so it is never shorter than the nearest look's, and longer from down the hallway."""
    env = gym.make(ENV_ID, size=13, random_length=random_length)
    rng = np.random.default_rng(0)
    up_close = MiniGridOracle(env, look="up-close")
    room_x, room_y = room_object_cell(13)
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        up_close.reset(rng)
        visited = False
        steps, terminated, reward = 0, False, 0.0
        while not terminated:
            x, y = (int(v) for v in env.unwrapped.agent_pos)
            visited |= abs(x - room_x) + abs(y - room_y) == 1
            obs, reward, terminated, truncated, _ = env.step(up_close(obs))
            steps += 1
            assert not truncated
        assert visited and reward > 0
        nearest = run_episode(env, MiniGridOracle(env), seed, rng)
        assert steps >= nearest["steps"]
    with pytest.raises(UserError, match="look='far'"):
        MiniGridOracle(env, look="far")


def binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within 4 standard deviations of n * p."""
    return abs(hits - n * p) <= 4 * np.sqrt(n * p * (1 - p))


def test_a_wrong_pick_scores_zero_and_the_noisy_shares():
    env = gym.make(ENV_ID, size=13, random_length=True)
    rng = np.random.default_rng(1)
    wrong = [
        run_episode(env, MiniGridNoisy(env, wrong_pick=1.0, noisy=0.0), s, rng) for s in range(40)
    ]
    assert all(ep["return"] == 0.0 and ep["terminated"] for ep in wrong)
    assert all(ep["seen_before_junction"] for ep in wrong)

    n = 400
    wrong_picks = MiniGridNoisy(env, wrong_pick=0.3, noisy=0.0)
    returns = np.array([run_episode(env, wrong_picks, s, rng)["return"] for s in range(n)])
    assert binomial_ok(int((returns == 0).sum()), n, 0.3)

    noisy = MiniGridNoisy(env, wrong_pick=0.0, noisy=1.0, random_step=0.2)
    eps = [run_episode(env, noisy, s, rng) for s in range(100)]
    oracle = [run_episode(env, MiniGridOracle(env), s, rng) for s in range(100)]
    assert np.mean([ep["steps"] for ep in eps]) > np.mean([ep["steps"] for ep in oracle])
    assert np.mean([ep["return"] > 0 for ep in eps]) > 0.6  # it replans after random steps


def test_bad_policy_settings():
    env = gym.make(ENV_ID, size=7)
    with pytest.raises(UserError, match="wrong_pick must be a probability"):
        MiniGridNoisy(env, wrong_pick=1.5)
    with pytest.raises(UserError, match="noise must be in"):
        make_collection_policy("minigrid-noisy", env, noise=2.0)
    with pytest.raises(UserError, match="is for flowrl/MiniGridMemory-v0, not Pendulum-v1"):
        make_collection_policy("minigrid-oracle", gym.make("Pendulum-v1"))
    with pytest.raises(UserError, match="not MiniGrid-MemoryS7-v0"):
        make_collection_policy("minigrid-oracle", gym.make("MiniGrid-MemoryS7-v0"))  # dict obs
    with pytest.raises(UserError, match="unknown policy 'minigrid-best'"):
        make_collection_policy("minigrid-best", env)


def test_collected_dataset_records_the_env_kwargs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = collect_dataset(
        ENV_ID,
        "minigrid-noisy",
        env_kwargs={"size": 9, "random_length": True},
        episodes=30,
        dataset_id="test/minigrid-9-v0",
        progress=False,
    )
    assert dataset.env_kwargs == {"size": 9, "random_length": True}
    assert (dataset.obs_dim, dataset.discrete_actions) == (151, 3)
    assert (dataset.ref_min_score, dataset.ref_max_score) == (0.0, 1.0)
    stored = minari.load_dataset("test/minigrid-9-v0")
    assert stored.spec.env_spec.kwargs == {"size": 9, "random_length": True}
    env = stored.recover_environment()
    assert isinstance(env.unwrapped, MemoryEnv) and env.unwrapped.width == 9
    path = tmp_path / "test" / "minigrid-9-v0" / "data" / "main_data.hdf5"
    with h5py.File(path, "r") as file:
        seeds = [int(file[f"episode_{i}"].attrs["seed"]) for i in range(5)]
    for ep, seed in zip(dataset.episodes, seeds, strict=False):  # replays in the recovered env
        obs, _ = env.reset(seed=seed)
        for t in range(len(ep)):
            np.testing.assert_array_equal(ep.observations[t], obs)
            obs, reward, *_ = env.step(int(ep.actions[t]))
            assert ep.rewards[t] == pytest.approx(reward)


def test_flowrl_collect_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    args = ["collect", "--env", ENV_ID, "--env-kwargs", "size=7", "--episodes", "5"]
    assert main([*args, "--policy", "minigrid-oracle", "--dataset-id", "test/mg-oracle-v0"]) == 0
    assert "5 episodes" in capsys.readouterr().out
    assert main([*args, "--dataset-id", "test/mg-default-v0"]) == 0  # minigrid-noisy
    meta = minari.load_dataset("test/mg-default-v0").storage.metadata["flowrl_collect"]
    assert (meta["policy"], meta["noise"]) == ("minigrid-noisy", 0.6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ("max_steps=2.5", "max_steps must be an integer"),
        ("size=7.5", "expected an odd integer >= 7"),
        ("size=100000000", "expected an odd integer >= 7"),
    ],
)
def test_bad_env_kwargs_are_one_line_before_any_rollout(tmp_path, kwargs, message):
    """max_steps=2.5 was minigrid's AssertionError traceback."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "flowrl", "collect", "--env", ENV_ID, "--env-kwargs", kwargs]
    done = subprocess.run(
        [*cmd, "--episodes", "1", "--dataset-id", "tests/mg-v0"],
        capture_output=True, text=True, timeout=scaled(600), env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not any(tmp_path.iterdir())
