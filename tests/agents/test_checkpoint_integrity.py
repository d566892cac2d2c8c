"""Checkpoints: altered bytes, foreign files and failed writes are caught, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from flowrl.agents import (
    DecisionTransformer,
    DecisionTransformerAgent,
    DecisionTransformerConfig,
    Normalizer,
    load_agent,
)
from flowrl.agents.checkpoint import load_checkpoint, save_atomic
from flowrl.cli import main
from flowrl.errors import UserError
from tests.timeouts import scaled

ROOT = Path(__file__).resolve().parents[2]


def tiny_agent(seed: int = 0) -> DecisionTransformerAgent:
    torch.manual_seed(seed)
    cfg = DecisionTransformerConfig(state_dim=3, act_dim=1, embed_dim=16, n_layers=1, n_heads=2)
    return DecisionTransformerAgent.from_parts(
        DecisionTransformer(cfg).eval(),
        Normalizer.from_arrays(np.zeros(3), [0.7, 1.3, 2.9], np.full(1, 2.0), 100.0),
        dataset="tiny",
        env_id="Pendulum-v1",
        target_returns=[-150.0],
    )


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "last.pt"
    save_atomic({"agent": tiny_agent().state_dict(), "step": 3}, path)
    return path


def test_intact_checkpoint_loads_with_its_weights(checkpoint):
    loaded = load_agent(checkpoint)
    for name, value in tiny_agent().model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("tensor", ["embed_state.weight", "obs_std"])
def test_flipped_bytes_in_the_weights_fail_the_checksum(checkpoint, tensor):
    state = tiny_agent().state_dict()
    value = state["model"][tensor] if tensor in state["model"] else state["normalizer"][tensor]
    raw = value.contiguous().numpy().tobytes()
    data = bytearray(checkpoint.read_bytes())
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0  # torch stores tensors uncompressed
    data[at + 5] ^= 0x40
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(UserError, match="do not match the checksum"):
        load_checkpoint(checkpoint)


def test_checkpoint_without_a_checksum_still_loads(checkpoint):
    """Checkpoints written before checksums existed."""
    state = torch.load(checkpoint, weights_only=True)
    del state["agent"]["checksum"]
    torch.save(state, checkpoint)
    assert load_agent(checkpoint).dataset == "tiny"


class Foreign:
    pass


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a complete PyTorch"),
        (lambda p: p.write_bytes(b""), "not a complete PyTorch"),
        (lambda p: torch.save({"weight": torch.zeros(3)}, p), "no format tag"),
        (lambda p: torch.save({"agent": {"model": {}}}, p), "no format tag"),
        (lambda p: torch.save([1, 2], p), "no format tag"),
        (lambda p: torch.save({"obj": Foreign()}, p), "stores Python objects"),
    ],
    ids=["random-bytes", "empty", "state-dict", "no-tag", "list", "python-objects"],
)
def test_foreign_files_are_not_flowrl_checkpoints(tmp_path, write, message):
    path = tmp_path / "foreign.pt"
    write(path)
    with pytest.raises(UserError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert "weights_only" not in str(err.value)


def test_truncated_checkpoint(checkpoint):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated, damaged"):
        load_checkpoint(checkpoint)


def test_eval_of_a_damaged_checkpoint_exits_2(checkpoint, capsys):
    data = bytearray(checkpoint.read_bytes())
    raw = tiny_agent().model.state_dict()["embed_state.weight"].numpy().tobytes()
    data[data.find(raw)] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "1"]) == 2
    assert "checksum" in capsys.readouterr().err


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    """A write that runs out of space (a file-size limit here) keeps the old last.pt."""
    path = tmp_path / "last.pt"
    save_atomic({"agent": tiny_agent(0).state_dict()}, path)
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_checkpoint_integrity import tiny_agent
        from flowrl.agents.checkpoint import save_atomic
        from flowrl.errors import UserError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            save_atomic({{"agent": tiny_agent(1).state_dict()}}, Path({str(path)!r}))
        except UserError as err:
            print(err)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"cannot write checkpoint {path}" in done.stdout
    assert "previous one is kept" in done.stdout
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda cfg: cfg.update(future_setting=1), "does not know: future_setting"),
        (lambda cfg: cfg.update(embed_dim=32), "its weights do not fit its model_config"),
        (lambda cfg: cfg.update(context_len=2.5), "model.context_len=2.5: expected an integer"),
    ],
    ids=["unknown-key", "other-shapes", "bad-value"],
)
def test_eval_of_a_checkpoint_whose_model_config_does_not_fit_is_one_line(
    checkpoint, change, message
):
    state = torch.load(checkpoint, weights_only=True)
    change(state["agent"]["model_config"])  # the checksum covers the weights, not the config
    torch.save(state, checkpoint)
    done = subprocess.run(
        [sys.executable, "-m", "flowrl", "eval", "--checkpoint", str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=scaled(600),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert str(checkpoint) in done.stderr


@pytest.mark.parametrize("setting", [{"embed_dim": True}, {"context_len": 2.5}])
def test_model_config_refuses_a_bool_or_a_fraction_for_a_size(setting):
    with pytest.raises(UserError, match=rf"model\.{next(iter(setting))}=.*: expected an integer"):
        DecisionTransformerConfig(**setting)
