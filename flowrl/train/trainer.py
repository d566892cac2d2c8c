"""The training loop: AdamW with linear warmup, clipping, mixed precision, periodic
evaluation, atomic checkpoints that resume exactly, TensorBoard and JSONL metrics.

Under torchrun it trains with DistributedDataParallel: each rank samples its own batches
(seed + rank), gradients are averaged, and only rank 0 logs, evaluates and writes files.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from flowrl.agents import Agent, DecisionTransformer, DecisionTransformerConfig, action_loss
from flowrl.agents.agent import load_checkpoint, save_atomic
from flowrl.data import EpisodeDataset, EpisodeSampler, WindowSampler
from flowrl.data.fingerprint import check_same_dataset, dataset_fingerprint
from flowrl.errors import UserError
from flowrl.eval import TargetResult, evaluate
from flowrl.train import distributed, preflight
from flowrl.train.config import TrainConfig, save_config
from flowrl.train.datasets import load_training_dataset
from flowrl.train.interrupt import StopOnSignal
from flowrl.train.logger import MetricsLogger, flatten
from flowrl.train.run_dir import claim_run_dir


def resolve_device(name: str) -> torch.device:
    """The configured device; under torchrun, CUDA means this rank's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available on this machine")
    if name.startswith("cuda") and distributed.launched():
        if name != "cuda":
            raise UserError(f"device={name!r} under torchrun: use cuda or auto (cuda:LOCAL_RANK)")
        index, count = distributed.local_rank(), torch.cuda.device_count()
        if index >= count:
            raise UserError(
                f"LOCAL_RANK={index} but this machine has {count} CUDA devices: "
                f"start at most {count} processes per node"
            )
        return torch.device("cuda", index)
    return torch.device(name)


def action_scale(dataset: EpisodeDataset) -> np.ndarray:
    """Per-dimension largest |action| in the data: the tanh head's range is scaled to it."""
    largest = np.abs(np.concatenate([ep.actions for ep in dataset.episodes])).max(0)
    return np.where(largest > 0, largest, 1.0).astype(np.float32)


def default_target(dataset: EpisodeDataset) -> float:
    """A high return the data still supports: its 90th percentile."""
    return float(np.percentile(dataset.returns, 90))


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        allow_dataset_change: bool = False,
    ) -> None:
        self.cfg, self.progress = cfg, progress
        self.device = resolve_device(cfg.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.run_dir = Path(cfg.out_dir) / cfg.name
        # reliability: rank 0 locks the run folder for the whole run (released by fit)
        self.run_lock = claim_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        checkpoint = self.run_dir / "checkpoints" / "last.pt"
        if resume and not checkpoint.is_file():
            raise UserError(f"--resume: no checkpoint at {checkpoint}")

        torch.manual_seed(cfg.seed + self.rank)  # own dropout per rank; DDP copies rank 0's init
        with distributed.main_first():  # a download happens once, on rank 0
            self.dataset: EpisodeDataset = load_training_dataset(
                cfg.data, progress=progress and self.is_main
            )
        # reliability: env made and spaces checked now, not at the first evaluation
        env_id = preflight.eval_env_id(self.dataset, cfg.eval.env_id)
        distributed.main_verdict(
            lambda: preflight.check_env(self.dataset, env_id, cfg.eval.env_kwargs)
        )
        self.dataset_fingerprint = dataset_fingerprint(self.dataset)
        model_cfg = DecisionTransformerConfig(
            state_dim=self.dataset.obs_dim, act_dim=self.dataset.act_dim, **asdict(cfg.model)
        )
        self.model = DecisionTransformer(model_cfg).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.lr,
            weight_decay=cfg.optim.weight_decay,
            betas=tuple(cfg.optim.betas),
        )
        warmup = max(cfg.optim.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min((step + 1) / warmup, 1.0)
        )
        sampler_cls = WindowSampler if cfg.model.context_mode == "window" else EpisodeSampler
        length_key = "context_len" if sampler_cls is WindowSampler else "max_len"
        self.sampler = sampler_cls(
            self.dataset,
            **{length_key: cfg.model.context_len},
            batch_size=cfg.optim.batch_size,
            return_scale=cfg.data.return_scale,
            seed=cfg.seed + self.rank,
        )
        self.bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and self.device.type == "cuda"
        )
        model: torch.nn.Module = self.model  # kept unwrapped for saving and evaluation
        if self.world_size > 1:  # averages the gradients over ranks in backward()
            cuda = self.device.type == "cuda"
            model = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
        self.train_model = torch.compile(model) if cfg.compile else model
        self.target_returns = cfg.eval.target_returns or [default_target(self.dataset)]
        self.action_scale = action_scale(self.dataset)
        self._action_scale = torch.as_tensor(self.action_scale, device=self.device)
        self.step, self.best_score = 0, -math.inf
        if resume:
            state = load_checkpoint(checkpoint)
            fingerprints = state.get("dataset_fingerprint"), self.dataset_fingerprint
            check_same_dataset(*fingerprints, cfg.data.dataset, allow=allow_dataset_change)
            self._restore(state)

    # ---------------------------------------------------------------- checkpoints
    def agent(self) -> Agent:
        ds = self.dataset
        return Agent(
            model=self.model,
            obs_mean=ds.obs_mean,
            obs_std=ds.obs_std,
            action_scale=self.action_scale,
            return_scale=self.cfg.data.return_scale,
            dataset=ds.name,
            env_id=self.cfg.eval.env_id or ds.env_id,
            env_kwargs=ds.env_kwargs,
            ref_min_score=ds.ref_min_score,
            ref_max_score=ds.ref_max_score,
            target_returns=self.target_returns,
        )

    def save(self, name: str) -> Path:
        """Rank 0 writes checkpoints/`name` with every rank's sampler and RNG states.

        Under torchrun every rank must call it: it gathers those states.
        """
        path = self.run_dir / "checkpoints" / name
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = distributed.gather({"sampler": self.sampler.state_dict(), "rng": rng})
        if self.is_main:
            save_atomic(
                {
                    "agent": self.agent().state_dict(),
                    "train_config": self.cfg.to_dict(),
                    "step": self.step,
                    "best_score": self.best_score,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "ranks": ranks,  # one {"sampler", "rng"} per rank, in rank order
                    "dataset_fingerprint": self.dataset_fingerprint,
                },
                path,
            )
        return path

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state["train_config"]
        for section in ("model", "data"):
            if saved[section] != asdict(getattr(self.cfg, section)):
                raise UserError(
                    f"--resume: the {section} settings differ from the checkpoint's "
                    f"({saved[section]} there)"
                )
        self.model.load_state_dict(state["agent"]["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_score = state["step"], state["best_score"]
        ranks = state["ranks"]
        if len(ranks) == self.world_size:  # each rank continues its own streams: exact
            own = ranks[self.rank]
            self.sampler.load_state_dict(own["sampler"])
            torch.set_rng_state(own["rng"]["torch"])
            if "cuda" in own["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(own["rng"]["cuda"], self.device)
        else:  # another world size: new streams, deterministic in (seed, rank, step)
            seed = distributed.derived_seed(self.cfg.seed, self.rank, self.step)
            self.sampler.reseed(seed)
            torch.manual_seed(seed)

    # ---------------------------------------------------------------- training
    def train_step(self) -> dict[str, float]:
        packed = self.cfg.model.context_mode == "episode"
        raw = self.sampler.sample_packed() if packed else self.sampler.sample()
        batch = raw.to_torch(self.device)
        actions = batch.actions / self._action_scale  # the model acts in [-1, 1]
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            predicted = self.train_model(
                batch.states,
                actions,
                batch.returns_to_go,
                batch.timesteps,
                cu_seqlens=batch.cu_seqlens if packed else None,
            )
        loss = action_loss(predicted.float(), actions, batch.mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.cfg.optim.grad_clip
        )
        self.optimizer.step()
        self.scheduler.step()
        return {
            "train/loss": loss.item(),
            "train/grad_norm": grad_norm.item(),
            "train/lr": self.scheduler.get_last_lr()[0],
            "tokens": 3.0 * float(batch.mask.sum()),
        }

    def evaluate(self) -> list[TargetResult]:
        ev = self.cfg.eval
        return evaluate(
            self.agent(),
            target_returns=self.target_returns,
            episodes=ev.episodes,
            num_envs=min(ev.num_envs, ev.episodes * len(self.target_returns)),
            seed=ev.seed,
            max_steps=ev.max_steps,
            env_kwargs=ev.env_kwargs,
            device=self.device,
        )

    def _log_eval(self, logger: MetricsLogger, results: list[TargetResult]) -> float:
        scalars: dict[str, float] = {}
        for r in results:
            s = r.summary()
            tag = f"eval/target_{r.target_return:g}"
            scalars[f"{tag}/return_mean"] = s["return_mean"]
            scalars[f"{tag}/return_std"] = s["return_std"]
            if s["normalized_mean"] is not None:
                scalars[f"{tag}/normalized_mean"] = s["normalized_mean"]
        key = "normalized_mean" if results[0].normalized is not None else "return_mean"
        score = float(np.mean([r.summary()[key] for r in results]))
        self.best_score = max(self.best_score, score)
        scalars[f"eval/{key}_last"] = score
        scalars[f"eval/{key}_best"] = self.best_score
        logger.log(self.step, scalars)
        return score

    def _evaluate_and_log(self, logger: MetricsLogger) -> tuple[list[TargetResult], float]:
        """Rank 0 evaluates and logs while the others wait; all save best.pt if it improved."""
        results, score, improved = [], math.nan, False
        if self.is_main:
            best = self.best_score
            results = self.evaluate()
            score = self._log_eval(logger, results)
            improved = score > best
        if distributed.broadcast(improved):
            self.save("best.pt")
        return results, score

    def fit(self) -> dict[str, Any]:
        """Trains up to cfg.steps; returns the final evaluation's summaries ([] off rank 0).

        SIGINT/SIGTERM stop it after the current step with last.pt saved (`Interrupted`).
        """
        with StopOnSignal() as self.stop:  # reliability
            try:
                return self._fit()
            except OSError as err:  # e.g. a full disk while logging: one line, not a traceback
                raise UserError(f"{err.filename or self.run_dir}: {err.strerror or err}") from None
            finally:
                if self.run_lock is not None:
                    self.run_lock.release()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        resume_step = self.step or None  # reliability: drop what a killed run logged past it
        logger = MetricsLogger(self.run_dir, enabled=self.is_main, resume_step=resume_step)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not (self.progress and self.is_main),
        )
        window_start, window_steps, window_tokens = time.perf_counter(), 0, 0.0
        while self.step < cfg.steps:
            metrics = self.train_step()
            self.step += 1
            window_steps += 1
            window_tokens += metrics.pop("tokens")
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                loss_sum, window_tokens = distributed.sum_over_ranks(
                    [metrics["train/loss"], window_tokens], self.device
                )
                metrics["train/loss"] = loss_sum / self.world_size  # what the gradients average
                metrics["perf/steps_per_s"] = window_steps / elapsed
                metrics["perf/tokens_per_s"] = window_tokens / elapsed
                logger.log(self.step, metrics)
                bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
                window_start, window_steps, window_tokens = time.perf_counter(), 0, 0.0
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                self._evaluate_and_log(logger)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save("last.pt")
            if distributed.sum_over_ranks([float(self.stop.requested)], self.device)[0]:
                path = self.save("last.pt")  # reliability: a signal came; save and stop
                bar.close()
                logger.close()
                raise self.stop.interrupted(self.step, f"saved {path}: add --resume to continue")
        bar.close()
        results, score = self._evaluate_and_log(logger)
        self.save("last.pt")
        logger.hparams(flatten(cfg.to_dict()), {"hparam/final_score": score})
        logger.close()
        distributed.barrier()  # every rank returns once rank 0's files are written
        return {"run_dir": str(self.run_dir), "results": [r.summary() for r in results]}
