"""Everything GPU-side in one run: kernel checks, kernel timings, Decision Transformer steps.

Three sections, each written to the JSON case by case (a killed run leaves what it did):

1. Checks: pytest on tests/ops/test_triton.py and tests/ops/test_relu_numerics.py in
   subprocesses, the `cuda`-marked tests (bf16, fp16, 8K-token shapes, both feature maps)
   and the rest side by side. A failure does not stop the timings; it shows in the table
   and makes the exit code 1.
2. Kernel timings: for each feature map, dtype (bf16, fp32) and length L (1K .. 32K) at a
   fixed B=8 H=16 d=64 (q, k, v of shape (B, L, H, d): 128 (batch row, head) programs, about
   one per SM of an H100/H200), the triton and chunked backends of `flow_attention` and
   PyTorch's causal `scaled_dot_product_attention` (flash for bf16, memory-efficient for
   fp32; it has no feature map, so it is timed once per dtype), forward and forward +
   backward: median ms (triton.testing.do_bench), peak memory above the inputs, and bytes/s
   against the bytes floor of docs/flow-attention.md "Cost" (4*B*H*L*d*bytes forward,
   7 more backward), also as a share of the measured device copy bandwidth. Each case has a
   time budget (--case-budget, after a first call that compiles and autotunes): a case
   whose calls are slow is timed as the median of fewer calls, one predicted from L/2 to be
   over budget is skipped, as is one out of memory.
3. Decision Transformer training steps (embed 128, 3 layers, 1 head): attention flow,
   flow-relu, softmax on backend auto (triton for the flow kinds on CUDA), bf16 autocast
   as `flowrl train` does on CUDA; window mode K = 20, batch 64, and episode mode (whole
   1000-step episodes packed with cu_seqlens, batch 8), and window mode under
   `torch.compile` (--dt-compile; a compile that fails runs eagerly and says why), on
   synthetic Hopper-shaped data (obs 11, act 3) built in-process: the trainer's own step
   (resident sampler, fused AdamW, loss read back every 50 steps), steps/s and tokens/s,
   and where a step's time goes (sample, copy, forward, backward, optimiser, logging; each
   phase timed on its own, waiting for the GPU).

They run in the order checks, DT steps (a fixed, small cost), kernel timings (the rest of
the time); the table prints last, in the order checks, kernels, DT. The run keeps within
--budget seconds (default 540, under a 10-minute limit): the pytest runs stop at
--checks-timeout, DT cases at the budget, and kernel cases past it are skipped (the longest
lengths go first). JSON (gpu.json), the table (table.txt) and the pytest logs go to --out
(default benchmarks/out/gpu/). Exit code: 0 when every check passed and no case raised an
error (skipped cases are fine), 1 otherwise, 2 without CUDA and without --smoke.

    python benchmarks/gpu.py --out benchmarks/out/gpu     # CUDA, at most 9 minutes
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke  # CPU, seconds: the script runs

--smoke runs on the CPU whatever the machine: tiny shapes, fp32 only, the Triton kernels
under TRITON_INTERPRET=1 (skipped without triton), pytest limited to -k relu_features.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from harness import DEFAULT_OUT, ROOT, add_common_args, resolve_profile
from step_case import BREAKDOWN, breakdown_line, build_step, timed_step
from synthetic import ACT, OBS, synthetic_dataset

from flowrl.experiments.hostinfo import machine
from flowrl.train.step import CompiledModel

CHECK_FILES = ("tests/ops/test_triton.py", "tests/ops/test_relu_numerics.py")
MODES = ("fwd", "fwd+bwd")
BACKENDS = ("triton", "triton-serial", "parallel", "chunked", "sdpa")
FLOOR_UNITS = {"fwd": 4, "fwd+bwd": 4 + 7}  # multiples of B*H*L*d*bytes (docs "Cost")
GROWTH = {
    "triton": 2,
    "triton-serial": 2,
    "parallel": 2,
    "chunked": 2,
    "sdpa": 4,
}  # time per doubling of L: linear, quadratic
DT_KINDS = ("flow", "flow-relu", "softmax")
RETURN_SCALE = 1000.0
LOG_EVERY = 50  # the trainer's default: the loss is read back once per 50 steps
DO_BENCH_MAX_MS = 100.0  # slower calls are timed as a median of a few calls instead
ENV_AT_START = dict(os.environ)  # the pytest subprocesses get this, not what we set
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Sizes of a full run and of --smoke; every one can be overridden on the command line.
PROFILES = {
    "full": {
        "lengths": [1024 * 2**i for i in range(6)],
        "dtypes": ["bf16", "fp32"],
        "batch": 8,
        "heads": 16,
        "dim": 64,
        "case_budget": 10.0,
        "max_calls": 4,
        "checks_timeout": 240.0,
        "window_batch": 64,
        "episode_batch": 8,
        "episode_len": 1000,
        "episodes": 16,
        "dt_seconds": 3.0,
        "dt_min_steps": 10,
        "dt_warmup": 3,
        "dt_breakdown_steps": 10,
        "dt_compile": True,
        # the Decision Transformer's own attention calls (embed 128, 1 head): episode mode,
        # 8 episodes of 1000 steps (3000 tokens); window mode, 64 windows of K = 20
        "dt_shapes": [
            {"shape": "dt-episode", "B": 8, "H": 1, "d": 128, "L": 3000},
            {"shape": "dt-window", "B": 64, "H": 1, "d": 128, "L": 60},
        ],
    },
    "smoke": {
        "lengths": [16, 32],
        "dtypes": ["fp32"],
        "batch": 1,
        "heads": 2,
        "dim": 16,
        "case_budget": 3.0,
        "max_calls": 1,
        "checks_timeout": 60.0,
        "window_batch": 8,
        "episode_batch": 2,
        "episode_len": 50,
        "episodes": 4,
        "dt_seconds": 0.0,
        "dt_min_steps": 2,
        "dt_warmup": 1,
        "dt_breakdown_steps": 2,
        "dt_compile": False,
        "dt_shapes": [
            {"shape": "dt-episode", "B": 2, "H": 1, "d": 16, "L": 48},
            {"shape": "dt-window", "B": 4, "H": 1, "d": 16, "L": 12},
        ],
    },
}


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C: stop, then still print the table and write the JSON."""


def _interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


# ------------------------------------------------------------------------------ report
class Report:
    """The JSON document, rewritten in full (atomically) after every case."""

    def __init__(self, out: Path, meta: dict) -> None:
        self.path = out / "gpu.json"
        self.doc: dict = {"meta": meta, "checks": [], "kernels": [], "dt": [], "finished": False}

    def flush(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def run_info(args: argparse.Namespace) -> dict:
    """Where and how this ran: the machine and the exact command (`hostinfo.machine`), the
    device, versions, the git commit."""
    info: dict = {
        **machine(),
        "cwd": os.getcwd(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "cuda": torch.version.cuda,
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError as e:
        info["triton"] = f"not importable: {e}"
    if args.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["device"] = torch.cuda.get_device_name(0)
        info["device_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["device_sms"] = props.multi_processor_count
        info["cudnn"] = torch.backends.cudnn.version()
        info["nvidia_smi"] = _quiet(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        )
    else:
        info["device"] = f"cpu ({info['cpu']})"
    info["git_commit"] = _quiet(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    status = _quiet(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    info["git_dirty"] = None if status is None else bool(status)
    return info


def _quiet(cmd: list[str]) -> str | None:
    """A command's stripped stdout, or None if it is missing or fails."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


# ------------------------------------------------------------------------------ checks
def check_runs(args: argparse.Namespace) -> list[dict]:
    """The pytest runs of this mode: a name, pytest's selection, and whether a skipped test
    fails the run (the cuda-marked tests skip only where there is no GPU)."""
    if args.smoke:
        return [
            {"name": "kernel tests -k relu_features (smoke)", "select": ["-k", "relu_features"]}
        ]
    return [
        {"name": "kernel tests, cuda-marked (bf16, fp16, 8K)", "select": ["-m", "cuda"],
         "no_skips": True},
        {"name": "kernel tests, the rest", "select": ["-m", "not cuda"]},
    ]  # fmt: skip


def run_checks(args: argparse.Namespace, report: Report, deadline: float) -> None:
    """The pytest runs side by side (they only compile and check; timings come after)."""
    env = {**ENV_AT_START, "FLOWRL_TRITON_AUTOTUNE": "0"}  # checks: one config, compiled once
    procs = []
    try:
        for i, run in enumerate(check_runs(args)):
            xml = args.out / f"checks_{i}.xml"
            log = args.out / f"checks_{i}.log"
            xml.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
            cmd += [*CHECK_FILES, *run["select"], f"--junitxml={xml}"]
            row = {"name": run["name"], "status": "KILLED", "seconds": 0.0, "log": log.name}
            row.update({"command": shlex.join(cmd), "no_skips": run.get("no_skips", False)})
            with log.open("w") as fh:
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            procs.append((row, proc, xml, log, time.monotonic()))
            report.doc["checks"].append(row)  # KILLED until it is done: so an interrupt says
        for row, proc, xml, log, started in procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                row["returncode"] = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                row["returncode"] = None
                row["note"] = f"timed out after {args.checks_timeout:.0f} s"
            row["seconds"] = round(time.monotonic() - started, 1)
            row.update(junit_counts(xml))
            row["status"] = check_status(row)
            row["log_tail"] = log.read_text(errors="replace")[-3000:]
            report.flush()
            print(f"check {row['status']}: {row['name']} ({row['seconds']} s)", flush=True)
    finally:
        for _, proc, *_ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def junit_counts(xml: Path) -> dict:
    """Counts of a pytest junit file, and the ids of the failed tests."""
    if not xml.is_file():
        return {"passed": None, "failed": None, "errors": None, "skipped": None}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "skipped")}
    failed_ids, error_ids = [], []
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            failed_ids.append(test_id)
        elif case.find("error") is not None:
            error_ids.append(test_id)
    failed, errors = len(failed_ids), len(error_ids)
    return {
        "passed": counts["tests"] - failed - errors - counts["skipped"],
        "failed": failed,
        "errors": errors,
        "skipped": counts["skipped"],
        "failed_tests": failed_ids + error_ids,
    }


def check_status(row: dict) -> str:
    if row["returncode"] is None:
        return "TIMEOUT"
    if row["returncode"] != 0 or row["passed"] is None:
        return "FAIL"
    if not row["passed"]:
        row["note"] = "no test ran"
        return "FAIL"
    if row["no_skips"] and row["skipped"]:
        row["note"] = "tests were skipped that must run on a CUDA machine"
        return "FAIL"
    return "PASS"


# ------------------------------------------------------------------------------ kernels
def median_do_bench(fn: Callable, grads: list | None = None) -> float:
    """Median ms of `triton.testing.do_bench` (which flushes the L2 cache between calls)."""
    from triton.testing import do_bench

    try:
        return do_bench(fn, grad_to_none=grads or None, return_mode="median")
    except TypeError:  # a triton without return_mode
        return do_bench(fn, grad_to_none=grads or None, quantiles=[0.5])


def copy_bandwidth() -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_do_bench(lambda: dst.copy_(src))
    return 2 * 2**30 / (ms * 1e-3)


def sdpa_choice(dtype, d: int, device: str):
    """(name, context) of the SDPA kernel used: flash where it runs (fwd and bwd), else
    memory-efficient; on the CPU PyTorch's default choice. Never the O(L^2) math kernel."""
    if device != "cuda":
        return "default", contextlib.nullcontext
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return "default", contextlib.nullcontext
    from torch.nn.functional import scaled_dot_product_attention

    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        try:
            x = torch.randn(1, 1, 128, d, device=device, dtype=dtype, requires_grad=True)
            with sdpa_kernel(backend):
                scaled_dot_product_attention(x, x, x, is_causal=True).sum().backward()
            return name, lambda backend=backend: sdpa_kernel(backend)
        except RuntimeError:
            continue
    return "math", contextlib.nullcontext


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(fn: Callable, grads: list, device: str, budget: float, max_calls: int) -> dict:
    """Warm-up call (compiles, autotunes), one probed call (peak memory), then do_bench for
    fast calls on CUDA, else the median of up to `max_calls` calls, as many as the budget
    has room for (the probed one counts)."""

    def call() -> float:
        t0 = time.perf_counter()
        fn()
        sync(device)
        for g in grads:
            g.grad = None
        return time.perf_counter() - t0

    first = call()  # not held to the budget: it compiles and autotunes
    t_start = time.perf_counter()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    probe = call()
    result: dict = {"first_call_s": round(first, 3)}
    if device == "cuda":
        result["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    left = budget - (time.perf_counter() - t_start)
    if device == "cuda" and probe * 1e3 <= DO_BENCH_MAX_MS and left > 1.0 + 10 * probe:
        result["time_ms"] = median_do_bench(fn, grads)
        result["method"] = "do_bench median"
        return result
    times = [probe]
    while len(times) < max_calls and left > probe * 1.2:
        times.append(call())
        left = budget - (time.perf_counter() - t_start)
    result["time_ms"] = 1e3 * statistics.median(times)
    result["method"] = f"median of {len(times)} calls"
    return result


def kernel_case(row: dict, args: argparse.Namespace, sdpa_ctx) -> dict:
    """Times one (backend, feature map, dtype, L, mode) case."""
    from torch.nn.functional import scaled_dot_product_attention

    from flowrl.ops import flow_attention

    device = args.device
    B, L, H, d = row["B"], row["L"], row["H"], row["d"]
    dtype = DTYPES[row["dtype"]]
    grad = row["mode"] == "fwd+bwd"
    backend, feature_map = row["backend"], row["feature_map"]
    shape = (B, H, L, d) if backend == "sdpa" else (B, L, H, d)
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=grad) for _ in range(3))
    dout = torch.randn(shape, device=device, dtype=dtype) if grad else None

    if backend == "sdpa":

        def attend():
            return scaled_dot_product_attention(q, k, v, is_causal=True)
    else:

        def attend():
            return flow_attention(q, k, v, backend=backend, feature_map=feature_map)

    def once() -> None:
        if grad:
            attend().backward(dout)
        else:
            with torch.no_grad():
                attend()

    with sdpa_ctx():
        grads = [q, k, v] if grad else []
        return time_case(once, grads, device, args.case_budget, args.max_calls)


def free_memory(device: str, collect: bool = True) -> None:
    """Hands cached blocks back to the device; `collect` also frees reference cycles (such
    as an exception's traceback holding a case's tensors)."""
    if collect:
        gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def predicted_skip(row: dict, done: dict, budget: float) -> tuple[str, str] | None:
    """(why, root cause) a case need not run, judging by the same case at L/2 and by its
    forward at L, or None."""
    key = (row["backend"], row["feature_map"], row["dtype"])
    fwd = done.get((*key, "fwd", row["L"]))
    if row["mode"] == "fwd+bwd" and fwd and "skipped" in fwd:
        cause = fwd.get("skip_cause", fwd["skipped"])
        return f"its forward was skipped ({cause})", cause
    half = done.get((*key, row["mode"], row["L"] // 2))
    if not half:
        return None
    if "skipped" in half:
        cause = half.get("skip_cause", half["skipped"])
        return f"skipped at L/2 ({cause})", cause
    if "time_ms" in half:
        # a warm-up and a probed call at least, each GROWTH times the L/2 call
        predicted = 2 * half["time_ms"] / 1e3 * GROWTH[row["backend"]]
        if predicted > budget:
            why = f"too slow: {predicted:.2g} s predicted from L/2, over the {budget:g} s budget"
            return why, why
    return None


def run_kernels(args: argparse.Namespace, report: Report, deadline: float) -> None:
    from flowrl.ops import FEATURE_MAPS

    device = args.device
    try:
        import flowrl.ops.flow_attention.triton  # noqa: F401
    except ImportError as e:
        triton_missing = f"triton backend not importable: {e}"
    else:
        triton_missing = None
    bandwidth = None
    if device == "cuda":
        try:
            bandwidth = copy_bandwidth()
            print(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s", flush=True)
        except Exception as e:
            print(f"copy bandwidth not measured: {e}", flush=True)
        free_memory(device)
    report.doc["meta"]["copy_bandwidth_bytes_per_s"] = bandwidth
    shape = {"shape": "sweep", "B": args.batch, "H": args.heads, "d": args.dim}
    report.doc["meta"]["kernel_shape"] = {**shape, "layout": "(B, L, H, d); SDPA (B, H, L, d)"}
    report.doc["meta"]["dt_shapes"] = args.dt_shapes
    feature_maps = args.feature_maps or list(FEATURE_MAPS)
    dims = {args.dim, *(s["d"] for s in args.dt_shapes)}
    sdpa = {(name, d): sdpa_choice(DTYPES[name], d, device) for name in args.dtypes for d in dims}
    report.doc["meta"]["sdpa_kernels"] = {f"{n} d={d}": c[0] for (n, d), c in sdpa.items()}
    done: dict = {}
    for row in kernel_rows(args, feature_maps):
        row = {**shape, **row}
        choice = sdpa[row["dtype"], row["d"]]
        if row["backend"] == "sdpa":
            row["sdpa_kernel"] = choice[0]
        if time.monotonic() > deadline:
            row["skipped"] = "the run's time budget is spent"
        elif row["backend"].startswith("triton") and triton_missing:
            row["skipped"] = triton_missing
        elif skip := predicted_skip(row, done, args.case_budget):
            row["skipped"], row["skip_cause"] = skip
        else:
            row.update(guarded(device, kernel_case, row, args, choice[1]))
        add_bandwidth(row, DTYPES[row["dtype"]].itemsize, bandwidth)
        done[tuple(row[k] for k in ("backend", "feature_map", "dtype", "mode", "L"))] = row
        report.doc["kernels"].append(row)
        report.flush()
        print("kernel " + json.dumps(row, default=str), flush=True)


def kernel_rows(args: argparse.Namespace, feature_maps: list[str]):
    """The cases in the order they run: the DT's own shapes first (bf16, the dtype it trains
    in on CUDA, else the first), then the sweep, L outermost: a run that hits its time
    budget loses the longest lengths, not a whole backend or dtype. SDPA has no feature
    map: once per L."""
    dt_dtype = "bf16" if "bf16" in args.dtypes else args.dtypes[0]
    cases = [(shape, [dt_dtype]) for shape in args.dt_shapes]
    cases += [({"L": L}, args.dtypes) for L in args.lengths]
    for shape, dtypes in cases:
        for dtype in dtypes:
            for backend in BACKENDS:
                for feature_map in [None] if backend == "sdpa" else feature_maps:
                    for mode in MODES:
                        yield {**shape, "backend": backend, "feature_map": feature_map,
                               "dtype": dtype, "mode": mode}  # fmt: skip


def guarded(device: str, fn: Callable[..., dict], *args) -> dict:
    """fn(*args); out of memory becomes a skip, any other exception an error."""
    failed = True
    try:
        result = fn(*args)
        failed = False
        return result
    except (torch.cuda.OutOfMemoryError, MemoryError):
        return {"skipped": "out of memory"}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:800]}
    finally:
        with contextlib.suppress(Exception):  # a broken CUDA context fails the next case
            free_memory(device, collect=failed)


def add_bandwidth(row: dict, itemsize: int, bandwidth: float | None) -> None:
    floor = FLOOR_UNITS[row["mode"]] * row["B"] * row["H"] * row["L"] * row["d"] * itemsize
    row["floor_bytes"] = floor
    if row.get("time_ms"):
        row["bytes_per_s"] = floor / (row["time_ms"] * 1e-3)
        row["gbytes_per_s"] = row["bytes_per_s"] / 1e9
        if bandwidth:
            row["copy_bandwidth_share"] = row["bytes_per_s"] / bandwidth


# ------------------------------------------------------------------------------ DT steps
def backend_name(kind: str, device: str) -> str:
    if kind == "softmax":
        return "sdpa"
    from flowrl.ops.flow_attention.api import resolve_backend

    return resolve_backend("auto", torch.device(device))


def dt_case(row: dict, args: argparse.Namespace, data, deadline: float) -> dict:
    """Steps/s of one training step as the trainer takes it (`step_case.build_step`: the
    resident sampler on CUDA, bf16 autocast, fused AdamW, `torch.compile` where the row
    says): steps queue on the GPU as in training, the loss is read back every `LOG_EVERY`
    steps, the clock stops after a final synchronize. Then `--dt-breakdown-steps` steps
    with each phase timed: where a step's time goes."""
    step = build_step(
        data,
        attention=row["attention"],
        backend="auto",
        mode=row["mode"],
        K=row["K"],
        batch=row["batch"],
        device=args.device,
        sampler=args.dt_sampler,
        compile=row["compile"],
        return_scale=RETURN_SCALE,
        episode_len=args.episode_len,
    )
    t0 = time.perf_counter()
    for _ in range(args.dt_warmup):
        out = step()
    sync(args.device)
    warmup_s = time.perf_counter() - t0
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps, tokens = 0, []
    t0 = time.perf_counter()
    while steps < args.dt_min_steps or (
        time.perf_counter() - t0 < args.dt_seconds and time.monotonic() < deadline
    ):
        out = step()
        tokens.append(out["tokens"])
        steps += 1
        if steps % LOG_EVERY == 0:
            float(out["train/loss"])  # the trainer's read-back at its log interval
    sync(args.device)
    seconds = time.perf_counter() - t0
    timed = [timed_step(step) for _ in range(args.dt_breakdown_steps)]
    result = {
        "sampler": "device" if step.resident else "host",
        "steps_per_s": steps / seconds,
        "step_ms": 1e3 * seconds / steps,
        "tokens_per_s": float(torch.stack(tokens).sum()) / seconds,
        "timed_steps": steps,
        "warmup_s": round(warmup_s, 2),
        "phase_ms": {p: 1e3 * statistics.median(t[p] for t in timed) for p in BREAKDOWN},
    }
    if isinstance(step.model, CompiledModel):
        result["compile_s"] = round(step.model.seconds, 2)
        if step.model.error:
            result["compile_error"] = step.model.error  # it ran eagerly: measured as such
    if args.device == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if not torch.isfinite(out["train/loss"]):
        result["error"] = f"the loss is not finite: {float(out['train/loss'])}"
    return result


def run_dt(args: argparse.Namespace, report: Report, deadline: float) -> None:
    data = synthetic_dataset(args.episodes, args.episode_len)
    precision = "bf16 autocast" if args.device == "cuda" else "fp32"
    model = {"embed_dim": 128, "n_layers": 3, "n_heads": 1, "dropout": 0.1}
    report.doc["meta"]["dt"] = {"data": data.name, "obs": OBS, "act": ACT, "model": model}
    cases: list[tuple] = [
        ("window", 20, args.window_batch),
        ("episode", args.episode_len, args.episode_batch),
    ]
    if args.dt_compile:  # shapes are static in window mode: there compiling can pay
        cases += [("window", 20, args.window_batch, True)]
    for mode, K, batch, *compiled in cases:
        for kind in args.dt_kinds:
            row = {"attention": kind, "mode": mode, "K": K, "batch": batch}
            row["compile"] = bool(compiled)
            row["precision"] = precision
            try:
                row["backend"] = backend_name(kind, args.device)
            except Exception as e:
                row["backend"] = f"? ({e})"
            if time.monotonic() > deadline:
                row["skipped"] = "the run's time budget is spent"
            else:
                row.update(guarded(args.device, dt_case, row, args, data, deadline))
            report.doc["dt"].append(row)
            report.flush()
            print("dt " + json.dumps(row, default=str), flush=True)


# ------------------------------------------------------------------------------ table
def cell(row: dict | None, key: str = "time_ms", fmt: str = "{:9.3f}", width: int = 9) -> str:
    """row[key] formatted; for the time column of a case that did not run, why in a word."""
    if not row:
        return f"{'-':>{width}}"
    if "error" in row and key in ("time_ms", "steps_per_s"):
        return f"{'ERROR':>{width}}"
    if "skipped" in row and key in ("time_ms", "steps_per_s"):
        reason = row["skipped"]
        word = "oom" if "memory" in reason else "slow" if "slow" in reason else "skip"
        return f"{word:>{width}}"
    if row.get(key) is None:
        return f"{'-':>{width}}"
    return fmt.format(row[key])


def table(doc: dict) -> str:
    meta = doc["meta"]
    lines = [f"== {meta.get('device')}; torch {meta.get('torch')}, CUDA {meta.get('cuda')}, "
             f"triton {meta.get('triton')}; CPU {meta.get('cpu')}"]  # fmt: skip
    lines.append("\nCHECKS")
    lines.append(f"{'run':44} {'status':>7} {'passed':>6} {'failed':>6} {'errors':>6} "
                 f"{'skipped':>7} {'time':>7}")  # fmt: skip
    for c in doc["checks"]:
        counts = " ".join(
            f"{'-' if c.get(k) is None else c[k]:>{w}}"
            for k, w in (("passed", 6), ("failed", 6), ("errors", 6), ("skipped", 7))
        )
        lines.append(f"{c['name']:44} {c['status']:>7} {counts} {c['seconds']:6.0f}s")
        for test_id in c.get("failed_tests", [])[:20]:
            lines.append(f"    failed: {test_id}")
        if c.get("note"):
            lines.append(f"    note: {c['note']}")
    if not doc["checks"]:
        lines.append("(not run)")

    lines.append("\nKERNELS")
    rows = doc["kernels"]
    if rows:
        shape = meta.get("kernel_shape", {})
        bw = meta.get("copy_bandwidth_bytes_per_s")
        sdpa = ", ".join(f"{k}: {v}" for k, v in meta.get("sdpa_kernels", {}).items())
        lines.append(
            f"B={shape.get('B')} H={shape.get('H')} d={shape.get('d')}; median ms; GB/s = bytes "
            f"floor / time (fwd 4, fwd+bwd 11 x B*H*L*d*bytes);\n%copy: share of the device "
            f"copy bandwidth ({f'{bw / 1e9:.0f} GB/s' if bw else 'not measured'}); "
            f"SDPA kernel: {sdpa}; ser/tri, sdpa/tri: time over triton's; "
            "the DT's shapes (dt-episode, dt-window) first"
        )
        lines.append(
            f"{'shape':10} {'fmap':8} {'dtype':5} {'L':>6} {'mode':8}|{'triton':>9} "
            f"{'serial':>9} {'parallel':>9} {'chunked':>9} {'sdpa':>9} |{'tri GB/s':>9} "
            f"{'%copy':>6} |{'ser/tri':>8} {'sdpa/tri':>8} |{'tri MB':>8}"
        )
        index = {(r["backend"], r["feature_map"], r["dtype"], r["mode"], r["L"]): r for r in rows}
        first_seen = {}  # feature maps and dtypes in the order they ran
        for r in rows:
            first_seen.setdefault(r["feature_map"], len(first_seen))
            first_seen.setdefault(r["dtype"], len(first_seen))
        shapes = {r["L"]: r.get("shape", "sweep") for r in rows}
        keys = sorted(
            {(r["feature_map"], r["dtype"], r["L"], r["mode"]) for r in rows if r["feature_map"]},
            key=lambda k: (shapes[k[2]] == "sweep", first_seen[k[0]], first_seen[k[1]], k[2],
                           MODES.index(k[3])),
        )  # fmt: skip
        for fm, dtype, L, mode in keys:
            tri = index.get(("triton", fm, dtype, mode, L))
            ser = index.get(("triton-serial", fm, dtype, mode, L))
            par = index.get(("parallel", fm, dtype, mode, L))
            chk = index.get(("chunked", fm, dtype, mode, L))
            sd = index.get(("sdpa", None, dtype, mode, L))

            def ratio(other, tri=tri) -> str:
                if other and tri and other.get("time_ms") and tri.get("time_ms"):
                    return f"{other['time_ms'] / tri['time_ms']:7.2f}x"
                return f"{'-':>8}"

            lines.append(
                f"{shapes[L]:10} {fm:8} {dtype:5} {L:>6} {mode:8}|{cell(tri)} {cell(ser)} "
                f"{cell(par)} {cell(chk)} {cell(sd)} |{cell(tri, 'gbytes_per_s', '{:9.1f}')}"
                f" {cell(tri, 'copy_bandwidth_share', '{:6.0%}', 6)} |"
                f"{ratio(ser)} {ratio(sd)} |{cell(tri, 'peak_mb', '{:8.0f}', 8)}"
            )
        notes = [r for r in rows if "error" in r or "skipped" in r]
        for r in notes:
            what = f"{r['backend']} {r['feature_map'] or ''} {r['dtype']} L={r['L']} {r['mode']}"
            lines.append(f"  {'ERROR' if 'error' in r else 'skipped'}: {what}: "
                         f"{r.get('error') or r.get('skipped')}")  # fmt: skip
    else:
        lines.append("(not run)")

    lines.append("\nDECISION TRANSFORMER TRAINING STEP (embed 128, 3 layers, 1 head)")
    if doc["dt"]:
        lines.append(
            f"{'attention':10} {'backend':8} {'mode':8} {'K':>5} {'batch':>5} {'precision':14}"
            f"{'compile':>8}|{'steps/s':>9} {'step ms':>9} {'tokens/s':>11} {'MB':>7}"
        )
        for r in doc["dt"]:
            compiled = "failed" if r.get("compile_error") else "yes" if r.get("compile") else "no"
            lines.append(
                f"{r['attention']:10} {r['backend']:8} {r['mode']:8} {r['K']:>5} {r['batch']:>5} "
                f"{r['precision']:14}{compiled:>8}|{cell(r, 'steps_per_s', '{:9.2f}')} "
                f"{cell(r, 'step_ms', '{:9.2f}')} {cell(r, 'tokens_per_s', '{:11.0f}', 11)} "
                f"{cell(r, 'peak_mb', '{:7.0f}', 7)}"
            )
            if "phase_ms" in r:
                lines.append(f"  ms (phases timed one by one): {breakdown_line(r['phase_ms'])}")
            if r.get("compile_error"):
                lines.append(f"  torch.compile failed, ran eagerly: {r['compile_error']}")
            if "error" in r or "skipped" in r:
                lines.append(f"  {r.get('error') or r.get('skipped')}")
    else:
        lines.append("(not run)")
    return "\n".join(lines)


def outcome(doc: dict) -> tuple[int, str]:
    failed = [c["name"] for c in doc["checks"] if c["status"] != "PASS"]
    errors = [r for r in doc["kernels"] + doc["dt"] if "error" in r]
    skipped = sum("skipped" in r for r in doc["kernels"] + doc["dt"])
    problems = []
    if failed:
        problems.append(f"{len(failed)} check run(s) failed")
    if errors:
        problems.append(f"{len(errors)} case(s) raised errors")
    if doc.get("section_errors"):
        problems.append(f"section(s) {', '.join(doc['section_errors'])} crashed")
    if doc.get("interrupted"):
        problems.append(f"interrupted ({doc['interrupted']})")
    tail = f"; {skipped} case(s) skipped" if skipped else ""
    if problems:
        return 1, "RESULT: FAILED: " + ", ".join(problems) + tail
    return 0, "RESULT: OK" + tail


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--dtypes", nargs="+", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--feature-maps", nargs="+", help="default: all of FEATURE_MAPS")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--case-budget", type=float, help="seconds per kernel case")
    parser.add_argument("--checks-timeout", type=float, help="seconds for the pytest runs")
    parser.add_argument("--dt-seconds", type=float, help="timed seconds per DT case")
    parser.add_argument("--dt-kinds", nargs="+", default=list(DT_KINDS))
    parser.add_argument(
        "--dt-sampler",
        choices=["auto", "host", "device"],
        default="auto",
        help="data.sampler of the DT cases (auto: device on CUDA)",
    )
    parser.add_argument(
        "--dt-compile",
        action=argparse.BooleanOptionalAction,
        help="also window-mode cases with torch.compile (default on; off in --smoke)",
    )
    parser.add_argument("--dt-breakdown-steps", type=int, help="steps timed phase by phase")
    parser.add_argument(
        "--part",
        choices=["checks", "timings", "all"],
        default="all",
        help="checks (pytest, one config per kernel) or timings (DT steps, kernels): one "
        "10-minute command each",
    )
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-dt", action="store_true")
    add_common_args(parser, [], quick=False, out=DEFAULT_OUT / "gpu")
    args = resolve_profile(parser, parser.parse_args(argv), PROFILES)
    args.skip_checks |= args.part == "timings"
    args.skip_dt |= args.part == "checks"
    args.skip_kernels |= args.part == "checks"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.smoke:
        # before flowrl's kernel module is imported (it reads this once, as it loads; the
        # `import torch` above does not load it)
        os.environ.setdefault("TRITON_INTERPRET", "1")
        args.device = "cpu"
        torch.set_num_threads(1)  # seconds, on whatever CI machine, next to other jobs
    elif torch.cuda.is_available():
        args.device = "cuda"
        if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on"):
            print("warning: TRITON_INTERPRET is set: the Triton timings are the interpreter's")
    else:
        print("benchmarks/gpu.py needs a CUDA GPU; on a CPU run it with --smoke", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out, run_info(args))
    report.flush()
    print(f"{report.doc['meta']['device']}: writing {report.path}", flush=True)

    end = started + args.budget
    signal.signal(signal.SIGTERM, _interrupt)
    sections = [
        (
            "checks",
            args.skip_checks,
            lambda: run_checks(args, report, min(time.monotonic() + args.checks_timeout, end)),
        ),
        ("dt", args.skip_dt, lambda: run_dt(args, report, end)),
        ("kernels", args.skip_kernels, lambda: run_kernels(args, report, end)),
    ]
    report.doc["section_seconds"], report.doc["section_errors"] = {}, {}
    try:
        for name, skip, run in sections:
            if skip:
                continue
            t0 = time.monotonic()
            try:
                run()
            except Exception:  # a bug in this script: the other sections still run
                report.doc["section_errors"][name] = traceback.format_exc()[-3000:]
                print(f"section {name} failed:\n{traceback.format_exc()}", flush=True)
            report.doc["section_seconds"][name] = round(time.monotonic() - t0, 1)
            report.flush()
        report.doc["finished"] = True
    except (Interrupted, KeyboardInterrupt) as e:
        report.doc["interrupted"] = str(e) or type(e).__name__
    report.doc["seconds"] = round(time.monotonic() - started, 1)
    code, verdict = outcome(report.doc)
    report.doc["result"] = verdict
    report.doc["exit_code"] = code
    report.flush()
    text = table(report.doc) + f"\n\n{verdict} ({report.doc['seconds']:.0f} s)\n"
    (args.out / "table.txt").write_text(text)
    print("\n" + text + f"wrote {report.path} and {args.out / 'table.txt'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
