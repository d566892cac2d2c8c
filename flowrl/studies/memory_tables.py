"""The memory benchmark's tables, read from `memory_benchmark.yaml` next to this module:
the tasks (env, length keyword, dataset id per length, shared settings, default lengths)
and the variants (attention kind, context, more settings, trained on several lengths)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flowrl.envs.minigrid_memory import size_with_longer_hallway
from flowrl.errors import UserError
from flowrl.nn import attention_kind
from flowrl.train.config_files import read_yaml_mapping

TABLES = Path(__file__).with_name("memory_benchmark.yaml")
CONTEXTS = ("episode", "window")


@dataclass(frozen=True)
class Task:
    """A memory task: its env, the keyword its length is, and its dataset per length."""

    env_id: str
    length_key: str  # the env keyword the benchmark's lengths set
    dataset: str  # dataset id pattern, {length}
    config: str  # the settings every run shares
    lengths: tuple[int, ...]  # the default grid
    smoke_length: int  # the one length of --smoke
    variants: tuple[str, ...] | None = None  # the default variants (None: all of them)
    policy: str | None = None  # collection policy (None: flowrl collect's default for the env)
    axis: str = "corridor length L (steps between cue and junction)"
    env_kwargs: dict[str, Any] | None = None  # more env settings of the collected data
    eval_env_kwargs: dict[str, Any] | None = None  # those of the evaluations at other lengths

    def collect_kwargs(self, length: int) -> dict[str, Any]:
        """The env settings the dataset at `length` is collected with."""
        return {self.length_key: length, **(self.env_kwargs or {})}

    def longer_kwargs(self, length: int, factor: int) -> dict[str, Any]:
        """The env settings of an evaluation `factor` times as long as `length`."""
        return {self.length_key: self.longer(length, factor), **(self.eval_env_kwargs or {})}

    def dataset_id(self, length: int) -> str:
        return self.dataset.format(length=length)

    def longer(self, length: int, factor: int) -> int:
        """The length whose corridor (hallway) is `factor` times as long as at `length`."""
        if self.length_key == "size":  # MiniGrid-Memory
            return size_with_longer_hallway(length, factor)
        return length * factor


@dataclass(frozen=True)
class Variant:
    """An agent set-up the benchmark trains at every length."""

    attention: str  # model.attention
    context: str  # "episode" (the whole episode) or "window"
    window: int | None = None  # K of a window context
    settings: tuple[str, ...] = ()  # more `--set` settings of every run
    multilength: bool = False  # trained on every length up to L together, evaluated at L
    stretch: tuple[int, ...] = ()  # data.stretch: stretched copies of the episodes added

    @property
    def recurrent(self) -> bool:
        """Whether it acts through a recurrent state (so it is also run in longer mazes)."""
        return self.context == "episode" and attention_kind(self.attention).recurrent


@dataclass(frozen=True)
class Tables:
    tasks: dict[str, Task]
    variants: dict[str, Variant]
    renamed: dict[str, str]  # old variant name -> new


def _entry(cls: type, path: Path, where: str, entry: Any) -> Any:
    """`cls(**entry)` with lists as tuples; a UserError naming the file and entry."""
    if not isinstance(entry, dict):
        raise UserError(f"{path}: {where}: expected a mapping, got {entry!r}")
    unknown = set(entry) - {f.name for f in fields(cls)}
    if unknown:
        raise UserError(f"{path}: {where}: unknown keys {', '.join(sorted(unknown))}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
    except TypeError as err:
        raise UserError(f"{path}: {where}: {err}") from None


def read_tables(path: Path = TABLES) -> Tables:
    """The tasks, variants and renamed variants of `path`, checked."""
    doc = read_yaml_mapping(path)
    if set(doc) != {"tasks", "variants", "renamed"}:
        raise UserError(f"{path}: expected the keys tasks, variants and renamed")
    tasks = {n: _entry(Task, path, f"tasks.{n}", e) for n, e in doc["tasks"].items()}
    variants = {n: _entry(Variant, path, f"variants.{n}", e) for n, e in doc["variants"].items()}
    renamed = dict(doc["renamed"])
    for name, variant in variants.items():
        where = f"{path}: variants.{name}"
        if variant.context not in CONTEXTS:
            raise UserError(f"{where}: context {variant.context!r}: expected episode or window")
        if (variant.window is None) != (variant.context == "episode"):
            raise UserError(f"{where}: a window context needs its window K, an episode none")
        try:
            attention_kind(variant.attention)
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
    named = [(f"tasks.{n}.variants", v) for n, t in tasks.items() for v in t.variants or ()]
    named += [(f"renamed.{old}", new) for old, new in renamed.items()]
    for where, name in named:
        if name not in variants:
            raise UserError(f"{path}: {where}: no variant {name!r}")
    return Tables(tasks, variants, renamed)
