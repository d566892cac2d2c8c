"""Checks on arrays read from files; errors name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowrl.errors import UserError


def fail(path: str | Path, key: str, problem: str) -> UserError:
    """The error for a bad array: `<file>: key '<key>': <problem>`."""
    return UserError(f"{path}: key {key!r}: {problem}")


def check_array(
    path: str | Path, key: str, array: np.ndarray, *, ndim: int, length: int | None = None
) -> np.ndarray:
    """Checks rank, length and (for floats) finiteness; returns the array."""
    if array.ndim != ndim:
        raise fail(path, key, f"expected a {ndim}-D array, got shape {array.shape}")
    if length is not None and len(array) != length:
        raise fail(path, key, f"has {len(array)} rows, expected {length}")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise fail(path, key, f"holds NaN or inf (first at row {row})")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise fail(path, key, f"has non-numeric dtype {array.dtype}")
    return array
