"""YAML as flowrl reads the values a user writes: config files, `--set`, `--grid` and
`--env-kwargs`. PyYAML's safe YAML 1.1 with YAML 1.2's plain scalars, so `010` is never
octal 8 and `off` never False."""

from __future__ import annotations

import re

import yaml


class ConfigLoader(yaml.SafeLoader):
    """YAML as flowrl reads settings (config files, `--set` and `--grid` values): PyYAML's
    safe YAML 1.1 with YAML 1.2's plain scalars. An integer is base 10 (`010` is not octal 8,
    `0x10`, `0b11` and `1:30` are text, which an integer setting reads as base 10 or refuses:
    `steps=010` is 10), a boolean is `true` or `false` only (`yes`, `no`, `on`, `off` are text,
    which a boolean setting still reads as such, and `name=off` stays `off`), a float needs
    no dot before its exponent (`3e-4`), and dates are text."""


_TAG = "tag:yaml.org,2002:"
_RESOLVED_HERE = {f"{_TAG}{kind}" for kind in ("bool", "int", "float", "timestamp")}
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _RESOLVED_HERE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    f"{_TAG}bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigLoader.add_implicit_resolver(
    f"{_TAG}int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)
ConfigLoader.add_implicit_resolver(
    f"{_TAG}float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class KwargsLoader(ConfigLoader):
    """`ConfigLoader` for values with no schema to read text as a number (env keyword
    arguments): an integer written with leading zeros is that integer in base 10 (`010` is
    10), as an integer setting of a config reads it."""


KwargsLoader.add_implicit_resolver(f"{_TAG}int", re.compile(r"^[-+]?0[0-9_]+$"), list("-+0"))
KwargsLoader.add_constructor(
    f"{_TAG}int", lambda loader, node: int(loader.construct_scalar(node).replace("_", ""), 10)
)
