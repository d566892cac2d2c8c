"""A sweep's runs: the Cartesian product of `--grid key=a,b` values times `--seeds`."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from flowrl.errors import UserError

# Keys the sweep sets itself: one run folder per grid point and seed.
RESERVED_KEYS = ("seed", "name", "out_dir")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its folder name, its grid values and its seed."""

    name: str
    values: tuple[tuple[str, str], ...]  # (key, value) per grid axis, in grid order
    seed: int

    @property
    def overrides(self) -> list[str]:
        """`key=value` settings of this run, without name and out_dir."""
        return [f"{key}={value}" for key, value in self.values] + [f"seed={self.seed}"]


def split_values(text: str) -> list[str]:
    """'a,b,[1,2]' -> ['a', 'b', '[1,2]']: commas inside brackets stay in the value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['model.attention=flow,softmax'] -> {'model.attention': ['flow', 'softmax']}."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--grid {item!r}: expected key=value1,value2,...")
        if key in RESERVED_KEYS:
            hint = " (use --seeds)" if key == "seed" else ""
            raise UserError(f"--grid {item!r}: the sweep sets {key} itself{hint}")
        if key in grid:
            raise UserError(f"--grid {key} is given twice: list its values once, comma-separated")
        values = split_values(rest)
        if any(not v for v in values) or len(set(values)) != len(values):
            raise UserError(f"--grid {item!r}: expected distinct, non-empty values")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7-8' -> [0, 3, 7, 8]."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"--seeds {text!r}: expected e.g. 0-4 or 0,1,2")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UserError(f"--seeds {text!r}: range {part.strip()} runs backwards")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each key's last component (model.attention -> attention) unless two keys share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: short if last.count(short) == 1 else key for key, short in zip(keys, last, strict=True)
    }


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+\-]+", "_", value).strip("_") or "_"


def expand(grid: dict[str, list[str]], seeds: list[int]) -> list[RunSpec]:
    """Every combination of grid values, each with every seed; names like attention-flow_seed-0."""
    short = _short_keys(list(grid))
    runs, names = [], {}
    for combo in itertools.product(*grid.values()):
        values = tuple(zip(grid, combo, strict=True))
        for seed in seeds:
            parts = [f"{short[key]}-{_safe(value)}" for key, value in values]
            name = "_".join([*parts, f"seed-{seed}"])
            if name in names:
                raise UserError(
                    f"--grid values {names[name]} and {values} give the same run folder "
                    f"name {name!r}: use values that differ in letters or digits"
                )
            names[name] = values
            runs.append(RunSpec(name=name, values=values, seed=seed))
    return runs
