"""Mutation check: each mutation breaks one feature-map or attention-kind path on purpose;
the tests named beside it must then fail. Run from the repository root:

    python tools/mutations.py            # every mutation; prints caught / MISSED per line

Each mutation is applied to a fresh copy of the tracked tree (git worktree in a temporary
folder), so the working tree is never touched. Exit status 1 if any mutation is missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPS = "flowrl/ops/flow_attention"
# name -> (file, text, replacement, tests that must catch it)
MUTATIONS = {
    "naive backend ignores feature_map": (
        f"{OPS}/naive.py", "features(x.q, x.k, x.v, x.lengths, options.feature_map)",
        'features(x.q, x.k, x.v, x.lengths, "sigmoid")', "tests/ops/test_flow_attention.py",
    ),
    "chunked backend ignores feature_map": (
        f"{OPS}/chunked_torch.py", "batch.lengths, options.feature_map)",
        'batch.lengths, "sigmoid")', "tests/ops/test_flow_attention.py",
    ),
    "parallel backend ignores feature_map": (
        f"{OPS}/parallel.py", "batch.v, lengths, options.feature_map)",
        'batch.v, lengths, "sigmoid")', "tests/ops/test_flow_attention.py",
    ),
    "recurrent step ignores feature_map": (
        f"{OPS}/recurrent_step.py", "apply_by_heads(x.to(dtype), options.feature_map, 1)",
        'apply_by_heads(x.to(dtype), "sigmoid", 1)', "tests/ops/test_flow_attention.py",
    ),
    "in-place step keeps the sigmoid": (
        f"{OPS}/inplace_step.py", "FEATURE_MAPS[name].apply_out",
        'FEATURE_MAPS["sigmoid"].apply_out', "tests/ops/test_inplace_step.py",
    ),
    "Triton forward keeps the sigmoid": (
        f"{OPS}/triton_kernels.py", "y = tl.maximum(x, 0.0)", "y = tl.sigmoid(x)",
        "tests/ops/test_triton.py",
    ),
    "Triton backward keeps the sigmoid derivative": (
        f"{OPS}/triton_kernels.py", "g = tl.where(y > 0.0, 1.0, 0.0)", "g = y * (1.0 - y)",
        "tests/ops/test_triton.py",
    ),
    "per-head maps: Triton runs every head with the first map": (
        f"{OPS}/triton.py", "options.clamp,\n            name,",
        "options.clamp,\n            groups[0][1],", "tests/ops/test_triton.py",
    ),
    "kind builds its layer without its feature map": (
        "flowrl/nn/attention.py", 'kw["feature_map"] = kind.feature_map', "pass",
        "tests/nn/test_attention.py tests/agents/test_decision_transformer.py",
    ),
    "kind without a clamp accepts one": (
        "flowrl/nn/attention.py",
        'raise ValueError(f"attention={name!r} has no clamp or eps, got {clamp=}, {eps=}")',
        "pass",
        "tests/nn/test_attention.py",
    ),
    "model config skips the clamp check of its kind": (
        "flowrl/agents/decision_transformer.py",
        "if value != spec and not kind.clamp:", "if False:",
        "tests/agents/test_decision_transformer.py",
    ),
    "acting stack steps every kind with sigmoid features": (
        "flowrl/agents/recurrent_stack.py", "feature_map=attn.feature_map,", "",
        "tests/agents/test_decision_transformer.py tests/agents/test_policy.py",
    ),
}  # fmt: skip


def run(name: str, path: str, old: str, new: str, tests: str, tree: Path) -> bool:
    """Applies one mutation in `tree`, runs its tests, restores; True if they failed."""
    file = tree / path
    text = file.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: {old!r} is not exactly once in {path}")
    file.write_text(text.replace(old, new))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
            cwd=tree, capture_output=True, text=True, check=False,
            env={**os.environ, "PYTHONPATH": str(tree), "TRITON_INTERPRET": "1"},
        )  # fmt: skip
    finally:
        file.write_text(text)
    return result.returncode != 0


def main() -> None:
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(tree)], cwd=ROOT, check=True
        )
        try:
            for name, (path, old, new, tests) in MUTATIONS.items():
                caught = run(name, path, old, new, tests, tree)
                missed += not caught
                print(f"{'caught' if caught else 'MISSED'}  {name}  ({tests})", flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True
            )
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
