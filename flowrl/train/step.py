"""One training step that stays on the device, and the parts it is made of.

The batch comes from a resident sampler (the dataset on the device, batches built there) or
from a host sampler and a copy; then the agent's loss, backward, gradient clipping, AdamW
(fused where the device has it) and the warmup schedule. Nothing in the step reads a value
back to the host: it returns device tensors, and the caller reads them when it logs.
`PhaseClock` times the step's phases (sample, copy, forward, backward, optimiser) for the
benchmarks' breakdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowrl.agents import DecisionTransformerAgent
from flowrl.data import EpisodeDataset, EpisodeSampler, WindowSampler
from flowrl.data.resident import ResidentEpisodeSampler, ResidentWindowSampler
from flowrl.train.config import OptimConfig

PHASES = ("sample", "copy", "forward", "backward", "optimiser")

Sampler = WindowSampler | EpisodeSampler | ResidentWindowSampler | ResidentEpisodeSampler


def resident_sampler(choice: str, device: torch.device) -> bool:
    """Whether `data.sampler` = `choice` keeps the dataset on `device`: `auto` does on CUDA
    (it saves the per-step copy and host work), not on the CPU, where the host sampler's
    numpy gathers are as fast and the data is in the same memory anyway."""
    if choice == "auto":
        return device.type == "cuda"
    return choice == "device"


def make_sampler(
    dataset: EpisodeDataset,
    *,
    context_mode: str,
    context_len: int,
    batch_size: int,
    seed: int,
    resident: bool,
    device: torch.device,
) -> Sampler:
    """The sampler of the context mode: windows of `context_len` steps, or episode prefixes
    of up to `context_len`; resident ones build batches on `device`."""
    if context_mode == "episode":
        if resident:
            return ResidentEpisodeSampler(
                dataset, max_len=context_len, batch_size=batch_size, seed=seed, device=device
            )
        return EpisodeSampler(dataset, max_len=context_len, batch_size=batch_size, seed=seed)
    if resident:
        return ResidentWindowSampler(
            dataset, context_len=context_len, batch_size=batch_size, seed=seed, device=device
        )
    return WindowSampler(dataset, context_len=context_len, batch_size=batch_size, seed=seed)


def fused_adamw(device: torch.device) -> bool:
    """Whether AdamW runs fused (one kernel for all parameters) on `device`: on CUDA and on
    the CPU (torch >= 2.4), where it takes a quarter of the default (foreach) one's time at
    the papers' size (docs/benchmarks.md)."""
    return device.type in ("cuda", "cpu")


def make_optimizer(
    model: nn.Module, optim: OptimConfig, device: torch.device
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (fused where `fused_adamw`) with the linear warmup schedule."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        betas=tuple(optim.betas),
        fused=fused_adamw(device) or None,
    )
    warmup = max(optim.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, 1.0)
    )
    return optimizer, scheduler


class CompiledModel:
    """`torch.compile(model)`, or `model` itself where compiling fails at the first call:
    then `error` says why, and training goes on eagerly. `seconds`: how long the first call
    took (compiling included, or the failed try and the eager call)."""

    def __init__(self, model: nn.Module, backend: str | Callable = "inductor") -> None:
        self.model = model
        self.compiled = torch.compile(model, backend=backend)
        self.active: Callable = self.compiled
        self.error: str | None = None
        self.tried = False
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.tried:
            return self.active(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # dynamo and inductor raise many kinds: run it eagerly
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            self.error = " ".join([type(err).__name__ + ":", *lines[:2]])  # what, and why
            self.active = self.model
            out = self.model(*args, **kwargs)
        self.tried, self.seconds = True, time.perf_counter() - start
        return out


class PhaseClock:
    """Seconds per phase of a step, summed over the steps it timed. Each mark waits for
    the device (CUDA), so the times are the phases' own; a timed step is slower than one
    that is not timed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    def start(self) -> None:
        self._wait()
        self.last = time.perf_counter()

    def mark(self, phase: str) -> None:
        self._wait()
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now

    def _wait(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TrainStep:
    """One optimizer step of `agent` on a batch of `sampler`; `model` is the module to call
    (the agent's, or its DDP / compiled wrapper)."""

    def __init__(
        self,
        agent: DecisionTransformerAgent,
        model: nn.Module | Callable,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        sampler: Sampler,
        *,
        device: torch.device,
        bf16: bool,
        grad_clip: float,
    ) -> None:
        self.agent, self.model = agent, model
        self.optimizer, self.scheduler, self.sampler = optimizer, scheduler, sampler
        self.device, self.bf16, self.grad_clip = device, bf16, grad_clip
        self.packed = isinstance(sampler, EpisodeSampler | ResidentEpisodeSampler)
        self.resident = isinstance(sampler, ResidentWindowSampler | ResidentEpisodeSampler)
        self.parameters = list(agent.model.parameters())

    def __call__(self, clock: PhaseClock | None = None) -> dict[str, Tensor]:
        """Returns device tensors (no host sync): the loss, the gradient norm and the number
        of real tokens. With `clock`, adds each phase's time to it."""
        mark = clock.mark if clock is not None else _no_mark
        if clock is not None:
            clock.start()
        raw = self.sampler.sample_packed() if self.packed else self.sampler.sample()
        mark("sample")
        batch = raw if self.resident else raw.to_torch(self.device)
        mark("copy")
        self.agent.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.agent.loss(batch, self.model)
        mark("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        mark("optimiser")
        return {
            "train/loss": loss.detach(),
            "train/grad_norm": grad_norm.detach(),
            "tokens": 3 * batch.valid.sum(),
        }


def _no_mark(phase: str) -> None:
    """A step that is not timed marks nothing."""
