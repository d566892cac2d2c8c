"""How a state becomes a token: `model.state_encoder`.

- "linear" (the default): one linear layer over the standardised observation.
- "grid": for MiniGrid-Memory's flat observations (flowrl/envs/minigrid_memory.py): each of
  the 7x7 cells' (object, colour, state) codes looks up a small learned embedding, the
  cells' concatenated embeddings and the one-hot direction go through one linear layer.
  It reads the raw integer codes, so the agent does not standardise a grid model's states
  (`standardises_states`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from flowrl.envs.minigrid_memory import CELL_CODES, DIRECTIONS, GRID_DIM, OBS_DIM, VIEW

STATE_ENCODERS = ("linear", "grid")
GRID_STATE_DIM = OBS_DIM
CODE_EMBED_DIMS = (8, 4, 2)  # embedding sizes of the object, colour and state codes


def standardises_states(state_encoder: str) -> bool:
    """Whether the normaliser standardises the observations this encoder reads."""
    return state_encoder == "linear"


class GridEncoder(nn.Module):
    """Flat grid observations (..., 151) of raw codes -> tokens (..., embed_dim)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.codes = nn.ModuleList(
            nn.Embedding(n, d) for n, d in zip(CELL_CODES, CODE_EMBED_DIMS, strict=True)
        )
        self.project = nn.Linear(VIEW * VIEW * sum(CODE_EMBED_DIMS) + DIRECTIONS, embed_dim)

    def forward(self, states: Tensor) -> Tensor:
        cells = states[..., :GRID_DIM].round().long().unflatten(-1, (VIEW * VIEW, 3))
        parts = [embed(cells[..., k]) for k, embed in enumerate(self.codes)]
        grid = torch.cat(parts, dim=-1).flatten(-2)  # (..., 49 * 14)
        return self.project(torch.cat([grid, states[..., GRID_DIM:]], dim=-1))


def make_state_encoder(state_encoder: str, state_dim: int, embed_dim: int) -> nn.Module:
    """The encoder named by `state_encoder` (one of STATE_ENCODERS)."""
    if state_encoder == "grid":
        return GridEncoder(embed_dim)
    return nn.Linear(state_dim, embed_dim)


def grid_code_error(observations: np.ndarray) -> str | None:
    """What makes these observations (N, 151) unreadable for the grid encoder, or None."""
    codes = observations[:, :GRID_DIM].reshape(len(observations), VIEW * VIEW, 3)
    if not np.array_equal(codes, np.round(codes)):
        return "its grid entries are not integer codes"
    for k, (name, n) in enumerate(zip(("object", "colour", "state"), CELL_CODES, strict=True)):
        low, high = codes[..., k].min(), codes[..., k].max()
        if low < 0 or high >= n:
            return f"its {name} codes span {low:g}..{high:g}, outside 0..{n - 1}"
    return None
