"""Acting with a Decision Transformer in M environments at once.

The policy keeps each environment's history (states, actions, returns-to-go) and
conditions on a target return decremented by each reward received. Window mode
recomputes the last K steps; episode mode recomputes the whole episode so far, or,
for flow agents, steps through the attention's recurrent state at constant cost.
Softmax agents act in window mode only (episode mode needs flow attention), so they
recompute the last K steps rather than keep a KV cache. Timesteps past the model's
`max_timestep` reuse its last timestep embedding, as in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from flowrl.agents.decision_transformer import DecisionTransformer
from flowrl.ops import FlowAttentionState


class DecisionTransformerPolicy:
    def __init__(
        self,
        model: DecisionTransformer,
        *,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        action_scale: np.ndarray,
        return_scale: float,
        num_envs: int,
        max_steps: int,
        recurrent: bool | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.obs_mean = torch.as_tensor(obs_mean, dtype=torch.float32, device=self.device)
        self.obs_std = torch.as_tensor(obs_std, dtype=torch.float32, device=self.device)
        self.action_scale = torch.as_tensor(action_scale, dtype=torch.float32, device=self.device)
        self.return_scale = return_scale
        cfg = model.cfg
        self.window = cfg.context_len if cfg.context_mode == "window" else max_steps
        self.recurrent = (
            model.recurrent and cfg.context_mode == "episode" if recurrent is None else recurrent
        )
        if self.recurrent and not model.recurrent:
            raise ValueError("recurrent acting needs a flow-attention model")
        M, T = num_envs, max_steps
        self.states = torch.zeros(M, T, cfg.state_dim, device=self.device)
        self.actions = torch.zeros(M, T, cfg.act_dim, device=self.device)
        self.returns_to_go = torch.zeros(M, T, device=self.device)
        self.t = torch.zeros(M, dtype=torch.long, device=self.device)
        self.attn_states: list[FlowAttentionState | None] = [None] * cfg.n_layers

    @torch.no_grad()
    def reset(self, rows: np.ndarray, target_returns: np.ndarray) -> None:
        """Starts new episodes in the rows where `rows` is True, aiming at `target_returns`."""
        mask = torch.as_tensor(rows, device=self.device, dtype=torch.bool)
        target = torch.as_tensor(target_returns, device=self.device, dtype=torch.float32)
        self.t[mask] = 0
        self.returns_to_go[mask, 0] = target[mask] / self.return_scale
        if self.recurrent and self.attn_states[0] is not None:
            self.attn_states = [s.reset(mask) for s in self.attn_states]

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Actions (M, act_dim) for the current observations of all M environments."""
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        rows = torch.arange(obs.shape[0], device=self.device)
        self.states[rows, self.t] = (obs - self.obs_mean) / self.obs_std
        action = self._act_recurrent(rows) if self.recurrent else self._act_recompute(rows)
        self.actions[rows, self.t] = action
        return (action * self.action_scale).cpu().numpy()

    @torch.no_grad()
    def observe(self, rewards: np.ndarray) -> None:
        """Records the rewards of the last actions and moves every row one step on."""
        reward = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        rows = torch.arange(reward.shape[0], device=self.device)
        if self.recurrent:
            t = self.t.clamp(max=self.model.cfg.max_timestep - 1)
            self._feed(self.model.embed_action(self.actions[rows, self.t]), t)
        nxt = (self.t + 1).clamp(max=self.states.shape[1] - 1)
        self.returns_to_go[rows, nxt] = (
            self.returns_to_go[rows, self.t] - reward / self.return_scale
        )
        self.t = nxt

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

    def _feed(self, embedding: Tensor, timesteps: Tensor) -> Tensor:
        token = self.model.embed_ln(embedding + self.model.embed_timestep(timesteps))
        hidden, self.attn_states = self.model.step(token, self.attn_states)
        return hidden

    def _act_recurrent(self, rows: Tensor) -> Tensor:
        """Feeds the return-to-go and state tokens of this step through the recurrent state."""
        t = self.t.clamp(max=self.model.cfg.max_timestep - 1)
        self._feed(self.model.embed_return(self.returns_to_go[rows, self.t].unsqueeze(-1)), t)
        hidden = self._feed(self.model.embed_state(self.states[rows, self.t]), t)
        return self.model.action_from_hidden(hidden)
