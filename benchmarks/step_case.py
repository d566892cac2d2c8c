"""One Decision Transformer training step as `flowrl train` builds it, for the speed
benchmarks (benchmarks/training.py on the CPU, benchmarks/gpu.py on CUDA), and where its
time goes: sample, copy, forward, backward, optimiser, logging.

The step is the trainer's own (`flowrl.train.step`): the agent set up on the data (model and
normaliser), fused AdamW with the default optim settings and warmup, the sampler of the
context mode (resident on the device or not, as `data.sampler` says), bf16 autocast on CUDA.
"""

from __future__ import annotations

import time

import torch

from flowrl.agents import DecisionTransformerAgent, DecisionTransformerConfig
from flowrl.train.config import OptimConfig
from flowrl.train.step import (
    PHASES,
    CompiledModel,
    PhaseClock,
    TrainStep,
    make_optimizer,
    make_sampler,
    resident_sampler,
)

BREAKDOWN = (*PHASES, "logging")  # logging: reading the loss and gradient norm back


def build_step(
    data,
    *,
    attention: str,
    backend: str,
    mode: str,
    K: int,
    batch: int,
    device: str,
    sampler: str = "auto",
    compile: bool = False,
    return_scale: float = 1000.0,
    episode_len: int = 1000,
) -> TrainStep:
    """The training step of one case, on `device` (fp32 on the CPU, bf16 autocast on CUDA)."""
    torch.manual_seed(0)
    device = torch.device(device)
    cfg = DecisionTransformerConfig(
        attention=attention,
        attention_backend=backend,
        context_mode=mode,
        context_len=K,
        max_timestep=max(1000, episode_len),
    )
    agent = DecisionTransformerAgent(cfg, return_scale=return_scale)
    agent.setup(data)
    agent.to(device)
    optimizer, scheduler = make_optimizer(agent.model, OptimConfig(), device)
    draws = make_sampler(
        data,
        context_mode=mode,
        context_len=K,
        batch_size=batch,
        seed=0,
        resident=resident_sampler(sampler, device),
        device=device,
    )
    return TrainStep(
        agent,
        CompiledModel(agent.model) if compile else agent.model,
        optimizer,
        scheduler,
        draws,
        device=device,
        bf16=device.type == "cuda",
        grad_clip=OptimConfig().grad_clip,
    )


def timed_step(step: TrainStep) -> dict[str, float]:
    """One step with its phases timed (each phase waits for the device), then the read-back
    that logging does: seconds per phase of `BREAKDOWN`, the loss and the real tokens."""
    clock = PhaseClock(step.device)
    out = step(clock)
    start = time.perf_counter()
    loss, _ = float(out["train/loss"]), float(out["train/grad_norm"])
    seconds = {**clock.seconds, "logging": time.perf_counter() - start}
    return {**seconds, "loss": loss, "tokens": int(out["tokens"])}


def breakdown_line(phase_ms: dict[str, float]) -> str:
    """`sample 0.12 | copy 0.00 | ...` in ms, and each phase's share of their sum."""
    total = sum(phase_ms[p] for p in BREAKDOWN) or 1.0
    return " | ".join(f"{p} {phase_ms[p]:.2f} ({phase_ms[p] / total:.0%})" for p in BREAKDOWN)
