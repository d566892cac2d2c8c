"""Config files and `key=value` settings, read into a checked `TrainConfig`.

A file may name other files in its `defaults:` list, merged first. Values are read as YAML
1.2 reads plain scalars (`ConfigLoader`); parsing and type checks are OmegaConf's, the
checks of the values `check_config`'s.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from flowrl.errors import UserError
from flowrl.train.config import TrainConfig
from flowrl.train.config_checks import check_config
from flowrl.yaml_values import ConfigLoader


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file at `path` (after the files its `defaults:` list names),
    then `key=value` overrides (dotted keys)."""
    merged = OmegaConf.structured(TrainConfig)
    for source, mapping in config_layers(Path(path)) if path is not None else []:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.create(mapping))
        except OmegaConfBaseException as err:
            raise UserError(f"bad config in {source}: {_describe(err)}") from None
    try:
        merged = OmegaConf.merge(merged, dotlist(overrides))
    except OmegaConfBaseException as err:
        raise UserError(f"bad config: {_describe(err)}") from None
    cfg: TrainConfig = OmegaConf.to_object(merged)
    check_config(cfg)
    return cfg


def dotlist(overrides: list[str]) -> DictConfig:
    """`key=value` settings (`--set`, and `--grid` values) as a config to merge: each value
    read as a config file reads it (`parse_value`: integers base 10, `010` is 10)."""
    settings = OmegaConf.create({})
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        OmegaConf.update(settings, key, parse_value(text, f"--set {item!r}"))
    return settings


def composed_yaml(path: Path) -> str:
    """The file's settings with those of its defaults merged in, as one YAML mapping with no
    `defaults:` list: a copy that loads the same wherever it is put."""
    merged = OmegaConf.create({})
    for _, mapping in config_layers(path):
        merged = OmegaConf.merge(merged, mapping)
    return f"# {path}, its defaults merged in\n" + OmegaConf.to_yaml(merged)


def config_layers(path: Path) -> list[tuple[Path, dict]]:
    """The settings of `path` and the files its `defaults:` graph names, in merge order:
    depth-first, each file's defaults (paths relative to its folder) in their listed order
    before the file itself, each file once, where it first comes. A base that two defaults
    share is therefore merged before both and never over what either sets."""
    layers: list[tuple[Path, dict]] = []
    _add_layers(path, (), set(), layers)
    return layers


def _add_layers(
    path: Path, chain: tuple[Path, ...], merged: set[Path], layers: list[tuple[Path, dict]]
) -> None:
    if not path.is_file():
        listed = f" (in the defaults of {chain[-1]})" if chain else ""
        raise UserError(f"config file {path} does not exist{listed}")
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise UserError(f"config file {path}: its defaults come back to it ({cycle})")
    if resolved in merged:
        return
    mapping = read_yaml_mapping(path)
    defaults = mapping.pop("defaults", [])
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise UserError(
            f"config file {path}: defaults={defaults!r}: expected a list of config files, "
            "e.g. [../base/decision-transformer.yaml]"
        )
    for default in defaults:
        _add_layers(path.parent / default, (*chain, resolved), merged, layers)
    merged.add(resolved)
    layers.append((path, mapping))


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    return f"{key}: {message}" if key else message


def parse_value(text: str, setting: str) -> object:
    """The value of a `key=value` setting (`--set`, `--grid`), read as a config file's value."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{setting}: malformed value: {problem}") from None


def read_yaml_mapping(path: Path) -> dict:
    """A config file's settings; a UserError for malformed YAML or a file that is no mapping."""
    try:
        data = yaml.load(path.read_text(), Loader=ConfigLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"config file {path}: malformed YAML{line}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} cannot be read: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path}: expected a mapping of settings (key: value lines), "
            f"got a {type(data).__name__}"
        )
    return data
