"""Acting with a Decision Transformer in M environments at once.

The policy keeps each environment's history (states, actions, returns-to-go) in the
model's scale and conditions on a target return decremented by each reward received.
Window mode recomputes the last K steps; episode mode recomputes the whole episode so
far, or, for recurrent (flow) models, feeds one token at a time through the attention's
state at constant cost. Softmax agents recompute (no KV cache): per step O(K^2) in window
mode and O(t^2) in episode mode, which is why whole-episode context is flow's domain.

A discrete agent takes the most likely action, or samples one from the softmax of its
logits (`sample`), and feeds the one-hot vector of the action taken back as the next action
token. Sampling draws one uniform number per env and step from that env's own generator,
which `reset` restarts from the episode's seed: a sampled episode depends on its seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from flowrl.agents.decision_transformer import DecisionTransformer
from flowrl.agents.normalizer import Normalizer
from flowrl.agents.recurrent_stack import RecurrentStack
from flowrl.errors import UserError

INITIAL_HISTORY = 1024  # steps of history a policy holds before it first grows


def check_sampling(
    sample: bool,
    *,
    discrete: bool,
    refusal: str = "sampling actions needs a discrete agent; this one outputs continuous actions",
) -> None:
    """A UserError saying `refusal` when sampled actions are asked of continuous ones (there
    is no categorical distribution to sample from). The one check of sampling: the policy,
    `evaluate` and the preflight of a run (with its own setting named) call it."""
    if sample and not discrete:
        raise UserError(refusal)


def sampling_generator(seed: int) -> np.random.Generator:
    """The generator of an episode's action draws: a child of `seed`'s SeedSequence, so it
    never repeats the stream an env seeded with the same number draws from."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


class DecisionTransformerPolicy:
    def __init__(
        self,
        model: DecisionTransformer,
        normalizer: Normalizer,
        *,
        num_envs: int,
        max_steps: int,
        recurrent: bool | None = None,
        device: torch.device | str = "cpu",
        sample: bool = False,
        seed: int = 0,
    ) -> None:
        check_sampling(sample, discrete=model.cfg.discrete)
        self.model = model.eval()
        self.sample = sample
        children = np.random.SeedSequence(seed).spawn(num_envs)  # one stream per row
        self.generators = [np.random.default_rng(child) for child in children]
        self.device = torch.device(device)
        self.normalizer = normalizer.to(self.device)
        cfg = model.cfg
        self.window = cfg.context_len if cfg.context_mode == "window" else max_steps
        self.recurrent = (
            model.recurrent and cfg.context_mode == "episode" if recurrent is None else recurrent
        )
        if self.recurrent and not model.recurrent:
            raise ValueError("recurrent acting needs a model with a recurrent form (flow)")
        # the history grows with the longest episode so far, up to max_steps: a horizon of
        # 10^8 steps costs memory only as far as the episodes go; acting through the recurrent
        # state reads only the current step, so it holds two slots (this step, the next
        # step's return-to-go) and its memory stays flat however long the episode
        self.max_steps = max_steps
        T = 2 if self.recurrent else min(max_steps, INITIAL_HISTORY)
        self.states = torch.zeros(num_envs, T, cfg.state_dim, device=self.device)
        self.actions = torch.zeros(num_envs, T, cfg.act_dim, device=self.device)
        self.returns_to_go = torch.zeros(num_envs, T, device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.t_host = np.zeros(num_envs, dtype=np.int64)  # t, mirrored: no device sync
        self.stack = RecurrentStack(model, num_envs) if self.recurrent else None

    @torch.inference_mode()
    def reset(
        self,
        rows: np.ndarray,
        target_returns: np.ndarray,
        seeds: Sequence[int | None] | None = None,
    ) -> None:
        """Starts new episodes in the rows where `rows` is True, aiming at `target_returns`.
        A row with a seed in `seeds` restarts its action sampling from it."""
        for row, seed in enumerate(seeds or ()):
            if rows[row] and seed is not None:
                self.generators[row] = sampling_generator(seed)
        mask = torch.as_tensor(rows, device=self.device, dtype=torch.bool)
        target = torch.as_tensor(target_returns, device=self.device, dtype=torch.float32)
        self.t[mask] = 0
        self.t_host[np.asarray(rows, dtype=bool)] = 0
        self.returns_to_go[mask, 0] = self.normalizer.returns(target[mask])
        if self.stack is not None:
            self.stack.reset(mask)

    @torch.inference_mode()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Actions for the current observations of all M environments: (M, act_dim) float32,
        or (M,) int64 indices for a discrete agent."""
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        rows = torch.arange(obs.shape[0], device=self.device)
        self.states[rows, self.slot(self.t)] = self.normalizer.states(obs)
        output = self._act_recurrent(rows) if self.recurrent else self._act_recompute(rows)
        action = self._choose(output)
        self.actions[rows, self.slot(self.t)] = action
        return self.normalizer.env_actions(action).cpu().numpy()

    def _choose(self, output: Tensor) -> Tensor:
        """The model's output for this step (M, act_dim) -> the action taken, in the model's
        scale: continuous actions as predicted; for discrete ones the one-hot vector of the
        most likely or of a sampled action."""
        if not self.model.cfg.discrete:
            return output
        if self.sample:  # inverse CDF of the softmax at one uniform draw per row
            uniform = torch.tensor(
                [g.random() for g in self.generators], dtype=torch.float32, device=self.device
            )
            cdf = F.softmax(output.float(), dim=-1).cumsum(-1)
            index = (cdf < uniform.unsqueeze(-1)).sum(-1).clamp(max=output.shape[-1] - 1)
        else:
            index = output.argmax(-1)
        return F.one_hot(index, output.shape[-1]).to(self.actions.dtype)

    @torch.inference_mode()
    def observe(self, rewards: np.ndarray) -> None:
        """Records the rewards of the last actions and moves every row one step on."""
        reward = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        rows = torch.arange(reward.shape[0], device=self.device)
        if self.recurrent:
            self._feed("action", self.actions[rows, self.slot(self.t)])
        self.t_host = np.minimum(self.t_host + 1, self.max_steps - 1)
        if not self.recurrent and self.t_host.max() >= self.states.shape[1]:
            self._grow()
        nxt = (self.t + 1).clamp(max=self.max_steps - 1)
        returns = self.returns_to_go[rows, self.slot(self.t)] - self.normalizer.returns(reward)
        self.returns_to_go[rows, self.slot(nxt)] = returns
        self.t = nxt

    def slot(self, t: Tensor) -> Tensor:
        """Where step t lies in the history: t itself, or t mod 2 when acting recurrently."""
        return t % 2 if self.recurrent else t

    def _grow(self) -> None:
        """Doubles the history's length (at most max_steps), keeping what it holds."""
        length = min(2 * self.states.shape[1], self.max_steps)
        for name in ("states", "actions", "returns_to_go"):
            old = getattr(self, name)
            new = old.new_zeros(old.shape[0], length, *old.shape[2:])
            new[:, : old.shape[1]] = old
            setattr(self, name, new)

    def _act_recompute(self, rows: Tensor) -> Tensor:
        """The last `window` steps of each row, right-padded, through the full model."""
        length = (self.t + 1).clamp(max=self.window)
        K = int(length.max())
        start = self.t + 1 - length
        index = (start.unsqueeze(1) + torch.arange(K, device=self.device)).clamp(
            max=self.states.shape[1] - 1
        )
        gather = rows.unsqueeze(1)
        pred = self.model(
            self.states[gather, index],
            self.actions[gather, index],
            self.returns_to_go[gather, index],
            index,
        )
        return pred[rows, length - 1]

    def _feed(self, kind: str, values: Tensor) -> Tensor:
        """One token of `kind` per row at the rows' current timesteps; the last hidden state."""
        token = self.model.embed_tokens(kind, values, self.t)
        return self.stack.step(token)

    def _act_recurrent(self, rows: Tensor) -> Tensor:
        """Feeds the return-to-go and state tokens of this step through the recurrent state."""
        slot = self.slot(self.t)
        self._feed("return", self.returns_to_go[rows, slot])
        return self.model.action_head(self._feed("state", self.states[rows, slot]))
