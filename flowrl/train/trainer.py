"""The training loop: AdamW with linear warmup, clipping, mixed precision, periodic
evaluation, atomic checkpoints that resume exactly, TensorBoard and JSONL metrics.

The loop only: the agent brings the model, its normaliser and its loss; the caller brings
the dataset (`flowrl.fit` or `flowrl train`). Scalars are read off the
device only at the log interval, so steps queue up on a GPU without waiting for each other.

Under torchrun it trains with DistributedDataParallel: each rank samples its own batches
(seed + rank), gradients are averaged, and only rank 0 logs, evaluates and writes files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from flowrl.agents import DecisionTransformerAgent
from flowrl.agents.agent import load_weights
from flowrl.agents.checkpoint import load_checkpoint, save_atomic
from flowrl.data import EpisodeDataset
from flowrl.data.fingerprint import check_same_dataset, dataset_fingerprint
from flowrl.errors import UserError
from flowrl.eval import TargetResult, evaluate
from flowrl.eval.rollout import EvaluationStopped, target_labels
from flowrl.train import distributed, preflight
from flowrl.train.config import TrainConfig, dotted_settings, save_config
from flowrl.train.interrupt import StopOnSignal
from flowrl.train.logger import MetricsLogger
from flowrl.train.resume_policy import check_resume
from flowrl.train.run_dir import claim_run_dir
from flowrl.train.step import (
    CompiledModel,
    TrainStep,
    make_optimizer,
    make_sampler,
    resident_sampler,
)
from flowrl.train.threads import set_training_threads


class Trainer:
    """Trains `agent` on `dataset` as `cfg` says (its `model` and `data.return_scale` are
    the agent's); `fit` runs the loop.

    The run folder is locked for the whole run; a new run into a used folder needs
    `overwrite`, and `resume` refuses a changed dataset unless `allow_dataset_change`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        agent: DecisionTransformerAgent,
        dataset: EpisodeDataset,
        *,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        allow_dataset_change: bool = False,
    ) -> None:
        # every check of the run, the eval env made now, not at the first evaluation
        self.device, env = preflight.check_run(cfg, dataset)
        self.cfg, self.agent, self.dataset, self.progress = cfg, agent, dataset, progress
        set_training_threads(cfg.threads, self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        torch.manual_seed(cfg.seed + self.rank)  # own dropout per rank; DDP copies rank 0's init
        # the checkpoint keeps the eval env and targets for flowrl eval; set up before the
        # run folder is touched (a grid encoder on other data stops here)
        agent.setup(dataset, env_id=env.env_id, target_returns=cfg.eval.target_returns)
        self.run_dir = Path(cfg.out_dir) / cfg.name
        # rank 0 locks the run folder for the whole run (released by fit)
        self.run_lock = claim_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        checkpoint = self.run_dir / "checkpoints" / "last.pt"
        if resume and not checkpoint.is_file():
            raise UserError(
                f"--resume: no checkpoint at {checkpoint}: nothing to resume; "
                "start over with --overwrite"
            )

        self.dataset_fingerprint = dataset_fingerprint(dataset)
        self.model = agent.to(self.device).model  # kept unwrapped for saving and evaluation
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg.optim, self.device)
        self.sampler = make_sampler(
            dataset,
            context_mode=cfg.model.context_mode,
            context_len=cfg.model.context_len,
            batch_size=cfg.optim.batch_size,
            seed=cfg.seed + self.rank,
            resident=resident_sampler(cfg.data.sampler, self.device),
            device=self.device,
        )
        self.bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and self.device.type == "cuda"
        )
        model: torch.nn.Module = self.model
        if self.world_size > 1:  # averages the gradients over ranks in backward()
            cuda = self.device.type == "cuda"
            model = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
        self.train_model = CompiledModel(model) if cfg.compile else model
        self.compile_reported = False
        self.train_step = TrainStep(
            agent,
            self.train_model,
            self.optimizer,
            self.scheduler,
            self.sampler,
            device=self.device,
            bf16=self.bf16,
            grad_clip=cfg.optim.grad_clip,
        )
        self.step, self.best_score = 0, -math.inf
        if resume:
            state = load_checkpoint(checkpoint)
            fingerprints = state.get("dataset_fingerprint"), self.dataset_fingerprint
            check_same_dataset(*fingerprints, cfg.data.dataset, allow=allow_dataset_change)
            self._restore(state)

    # ---------------------------------------------------------------- checkpoints
    def save(self, name: str, *, finished: bool = False) -> Path:
        """Rank 0 writes checkpoints/`name` with every rank's sampler and RNG states;
        `finished`: the run has trained its steps and made its final evaluation.

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
                    "agent": self.agent.state_dict(),
                    "train_config": self.cfg.to_dict(),
                    "step": self.step,
                    "best_score": self.best_score,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "ranks": ranks,  # one {"sampler", "rng"} per rank, in rank order
                    "dataset_fingerprint": self.dataset_fingerprint,
                    "finished": finished,
                },
                path,
            )
        return path

    def _restore(self, state: dict[str, Any]) -> None:
        check_resume(self.cfg, state["train_config"])
        refusal = "--resume: the checkpoint's weights do not fit this run's model (other data?)"
        load_weights(self.model, state["agent"]["model"], refusal)
        fused = [group["fused"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, flag in zip(self.optimizer.param_groups, fused, strict=True):
            group["fused"] = flag  # the checkpoint's own setting is another machine's
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
    def evaluate(self, stop: Callable[[], bool] | None = None) -> list[TargetResult]:
        ev = self.cfg.eval
        return evaluate(
            self.agent,
            env_id=ev.env_id,
            episodes=ev.episodes,
            num_envs=ev.num_envs,
            seed=ev.seed,
            max_steps=ev.max_steps,
            env_kwargs=ev.env_kwargs,
            sample_actions=ev.sample_actions,
            device=self.device,
            stop=stop,
        )

    def _log_eval(self, logger: MetricsLogger, results: list[TargetResult]) -> float:
        scalars: dict[str, float] = {}
        labels = target_labels([r.target_return for r in results])
        for r, label in zip(results, labels, strict=True):
            s = r.summary()
            tag = f"eval/target_{label}"
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

    def _evaluate_and_log(
        self, logger: MetricsLogger, *, final: bool = False
    ) -> tuple[list[TargetResult], float]:
        """Rank 0 evaluates and logs while the others wait; all save best.pt if it improved.
        The final evaluation ends early on a stop request: EvaluationStopped on every rank
        (a resumed run makes it again; an evaluation during training finishes, since the
        resumed run would not)."""
        results, score, improved, stopped = [], math.nan, False, False
        if self.is_main:
            best = self.best_score
            try:
                results = self.evaluate(stop=(lambda: self.stop.requested) if final else None)
            except EvaluationStopped:
                stopped = True
            else:
                score = self._log_eval(logger, results)
                improved = score > best
        if final and distributed.broadcast(stopped):
            raise EvaluationStopped
        if distributed.broadcast(improved):
            self.save("best.pt")
        return results, score

    def fit(self) -> dict[str, Any]:
        """Trains up to cfg.steps; returns the run folder, the final evaluation's summaries
        ([] off rank 0) and the best evaluation score.

        SIGINT/SIGTERM stop it after the current step with last.pt saved (`Interrupted`).
        """
        with StopOnSignal() as self.stop:
            try:
                return self._fit()
            except OSError as err:  # e.g. a full disk while logging: one line, not a traceback
                raise UserError(f"{err.filename or self.run_dir}: {err.strerror or err}") from None
            finally:
                if self.run_lock is not None:
                    self.run_lock.release()

    def _compile_report(self, bar: tqdm) -> dict[str, float]:
        """With `compile`, at the first log: how long the first (compiling) step took, and
        a warning if compiling failed and training went on eagerly."""
        compiled = self.train_model
        if not isinstance(compiled, CompiledModel) or self.compile_reported or not compiled.tried:
            return {}
        self.compile_reported = True
        if compiled.error is not None and self.is_main:
            bar.write(
                f"warning: torch.compile failed ({compiled.error}); training without it "
                f"(the try and the eager step took {compiled.seconds:.1f} s)"
            )
        return {"perf/compile_s": compiled.seconds, "perf/compiled": float(not compiled.error)}

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        resume_step = self.step or None  # drop what a killed run logged past it
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
        window_start, window_steps = time.perf_counter(), 0
        window_tokens = torch.zeros((), dtype=torch.int64, device=self.device)
        while self.step < cfg.steps:
            step = self.train_step()
            self.step += 1
            window_steps += 1
            window_tokens += step["tokens"]
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                # the one host sync of the interval: the last step's scalars, the tokens
                loss, grad_norm, tokens = (
                    float(x) for x in (step["train/loss"], step["train/grad_norm"], window_tokens)
                )
                elapsed = time.perf_counter() - window_start
                loss_sum, tokens = distributed.sum_over_ranks([loss, tokens], self.device)
                metrics = {
                    "train/loss": loss_sum / self.world_size,  # what the gradients average
                    "train/grad_norm": grad_norm,
                    "train/lr": self.scheduler.get_last_lr()[0],
                    "perf/steps_per_s": window_steps / elapsed,
                    "perf/threads": torch.get_num_threads(),
                    "perf/tokens_per_s": tokens / elapsed,
                }
                metrics |= self._compile_report(bar)
                logger.log(self.step, metrics)
                bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
                window_start, window_steps = time.perf_counter(), 0
                window_tokens.zero_()
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                self._evaluate_and_log(logger)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save("last.pt")
            if distributed.sum_over_ranks([float(self.stop.requested)], self.device)[0]:
                path = self.save("last.pt")  # a signal came: save and stop
                bar.close()
                logger.close()
                raise self.stop.interrupted(self.step, f"saved {path}: add --resume to continue")
        bar.close()
        try:
            results, score = self._evaluate_and_log(logger, final=True)
        except EvaluationStopped:
            path = self.save("last.pt")  # not finished: --resume makes the final evaluation
            logger.close()
            hint = f"the final evaluation was stopped; saved {path}: add --resume to make it"
            raise self.stop.interrupted(self.step, hint) from None
        self.save("last.pt", finished=True)
        logger.hparams(dotted_settings(cfg.to_dict()), {"hparam/final_score": score})
        logger.close()
        distributed.barrier()  # every rank returns once rank 0's files are written
        return {
            "run_dir": str(self.run_dir),
            "results": [r.summary() for r in results],
            "best_score": self.best_score,
        }
