"""A sweep's runs: the Cartesian product of `--grid key=a,b` values times `--seeds`,
generated lazily (a grid of many seeds lists its first run at once)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from flowrl.errors import MAX_NAME_BYTES, UserError

# Keys the sweep sets itself: one run folder per grid point and seed.
RESERVED_KEYS = ("seed", "name", "out_dir")
# More runs than this need --yes: a day of 1000 runs of a minute and a half each fills a
# machine, and a grid that large is more often a typo (--seeds 0-1000 for 0-10) than a plan.
MAX_RUNS = 1000
# A run's name is PREFIX_seed-N, a plain name (`check_name`): the prefix leaves room for
# `_seed-` and a seed of 20 digits.
MAX_PREFIX_BYTES = MAX_NAME_BYTES - len("_seed-") - 20

Point = tuple[tuple[str, str], ...]  # (key, value) per grid axis, in grid order


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its folder name, its grid values and its seed."""

    name: str
    values: Point
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


def parse_seeds(text: str) -> list[range]:
    """'0-4' -> [range(0, 5)]; '0,3,7-8' -> [range(0, 1), range(3, 4), range(7, 9)]."""
    seeds: list[range] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UserError(f"--seeds {text!r}: expected e.g. 0-4 or 0,1,2")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UserError(f"--seeds {text!r}: range {part.strip()} runs backwards")
        seeds.append(range(first, last + 1))
    ordered = sorted(seeds, key=lambda r: r.start)
    if any(b.start < a.stop for a, b in itertools.pairwise(ordered)):
        raise UserError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def count(grid: dict[str, list[str]], seeds: list[range]) -> int:
    """How many runs the grid times the seeds holds."""
    return math.prod(len(values) for values in grid.values()) * sum(map(len, seeds))


def check_size(grid: dict[str, list[str]], seeds: list[range], *, yes: bool) -> None:
    """More than MAX_RUNS runs need `yes`: a UserError stating the size otherwise."""
    total = count(grid, seeds)
    if total > MAX_RUNS and not yes:
        axes = [f"{len(values)} values of {key}" for key, values in grid.items()]
        sizes = " x ".join([*axes, f"{sum(map(len, seeds))} seeds"])
        raise UserError(
            f"the sweep holds {total} runs ({sizes}), more than {MAX_RUNS}: "
            "add --yes if you mean it"
        )


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each key's last component (model.attention -> attention) unless two keys share it."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {
        key: short if last.count(short) == 1 else key for key, short in zip(keys, last, strict=True)
    }


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+\-]+", "_", value).strip("_") or "_"


def points(grid: dict[str, list[str]]) -> dict[str, Point]:
    """Every combination of grid values, by the prefix of its runs' names (attention-flow);
    a UserError when two combinations would share run folders."""
    short = _short_keys(list(grid))
    named: dict[str, Point] = {}
    for combo in itertools.product(*grid.values()):
        values = tuple(zip(grid, combo, strict=True))
        prefix = "_".join(f"{short[key]}-{_safe(value)}" for key, value in values)
        if len(prefix.encode()) > MAX_PREFIX_BYTES:
            raise UserError(
                f"--grid values {values} give run folder names of {len(prefix.encode())} bytes "
                f"before _seed-N ({prefix[:60]}...): at most {MAX_PREFIX_BYTES} fit a file "
                "name; use shorter values"
            )
        if prefix in named:
            raise UserError(
                f"--grid values {named[prefix]} and {values} give the same run folder "
                f"names {prefix}_seed-N: use values that differ in letters or digits"
            )
        named[prefix] = values
    return named


def expand(grid: dict[str, list[str]], seeds: list[range]) -> Iterator[RunSpec]:
    """Every combination of grid values with every seed, one at a time; names like
    attention-flow_seed-0."""
    for prefix, values in points(grid).items():
        for seed in itertools.chain.from_iterable(seeds):
            name = "_".join([*([prefix] if prefix else []), f"seed-{seed}"])
            yield RunSpec(name=name, values=values, seed=seed)
