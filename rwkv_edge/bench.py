"""End-to-end benchmarks: decode against the memory-bandwidth roofline, prefill, context.

Decode reads every weight once per token, so its floor is
``weight_bytes / read_bandwidth``. Bandwidth is measured in the same run as
the model (it drifts with load on a shared machine, and a figure from another
day is meaningless), by two independent methods: a numba ``prange`` read loop
here and the C core's ``rwe_read_bandwidth`` (plain C + pthreads, csrc/bandwidth.c)
where the C engine is built, the two taking turns pass by pass over one buffer.
This module runs only code of the package: nothing it measures with is found
or compiled at run time. Every decode figure is reported with its ratio to that
roofline, which stays comparable across machines where raw ms/token do not.

On a shared machine the bandwidth itself moves by a third within minutes, so
each run also takes *paired* readings: short decode blocks, each between two
C bandwidth passes with the run's thread count, and the ratio of every block
to the passes around it (the median of those is ``paired_roofline_ratio``).

    from rwkv_edge.bench import BenchOptions, bench_model, format_report
    result = bench_model("m.gguf", [BenchOptions(threads=2), BenchOptions(threads=1)])
    print(format_report(result))                 # result is JSON-ready

Timing only happens here and in benchmarks/, never in tests.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from .checkpoint import open_checkpoint
from .config import ModelConfig
from .errors import ArgumentError, RwkvEdgeError

SCHEMA = "rwkv-edge-bench/1"
GB = 1e9
KV_BYTES_PER_VALUE = 2  # the transformer we compare against keeps its KV cache in fp16
CROSS_CHECK_TOLERANCE = 0.15  # numba and C bandwidth must agree this closely


# ---------------------------------------------------------------------------
# What to run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """One engine configuration to measure (a `vs` comparison has two)."""

    backend: str = "auto"
    threads: int = 2
    isa: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.isa}/{self.threads}t"


@dataclass(frozen=True)
class BenchPlan:
    """What to measure and how much of it; the defaults are the standard run."""

    n_decode: int = 64
    warmup: int = 8
    prefill_lengths: tuple[int, ...] = (64, 512)
    prefill_reps: int = 3  # runs of each prompt; the median is reported
    context_positions: tuple[int, ...] = ()  # e.g. (0, 1024, 8192, 32768); empty: skip
    context_chunk: int = 512
    context_decode: int = 16
    bandwidth_mib: int = 1024
    bandwidth_reps: int = 9
    paired_blocks: int = 8  # decode blocks, each between two bandwidth passes; 0: skip
    paired_tokens: int = 6  # timed tokens per block (after one untimed token)
    seed: int = 0


def parse_vs(spec: str, base: BenchOptions) -> BenchOptions:
    """'threads=1', 'isa=ref,threads=1', 'backend=numba', or a bare '1' / 'ref' / 'numba'."""
    out = base
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, _, val = part.partition("=")
        if not val:
            key, val = _guess_vs_key(key), key
        if key == "threads":
            if not val.isdigit() or int(val) < 1:
                raise ArgumentError(f"--vs threads must be a positive integer, got {val!r}")
            out = replace(out, threads=int(val))
        elif key == "isa":
            out = replace(out, isa=val)
        elif key == "backend":
            out = replace(out, backend=val)
        else:
            raise ArgumentError(f"--vs understands threads=, isa=, backend=; got {part!r}")
    if out == base:
        raise ArgumentError(f"--vs {spec!r} describes the same configuration as the base run")
    return out


def _guess_vs_key(value: str) -> str:
    if value.isdigit():
        return "threads"
    return "backend" if value in ("auto", "c", "numba") else "isa"


# ---------------------------------------------------------------------------
# Memory read bandwidth
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bandwidth:
    method: str  # "numba" | "c"
    threads: int
    best_gbps: float
    runs_gbps: list[float]

    @property
    def median_gbps(self) -> float:
        return float(statistics.median(self.runs_gbps))

    @property
    def p75_gbps(self) -> float:
        return upper_quartile(self.runs_gbps)


def upper_quartile(xs: list[float]) -> float:
    return float(np.percentile(xs, 75))


@njit(cache=True)
def _sum_slice(w: npt.NDArray[np.int64]) -> int:
    """One thread's read loop: a single int64 accumulator, which LLVM vectorises."""
    s = np.int64(0)
    for i in range(w.size):
        s += w[i]
    return s


@njit(parallel=True, cache=True)
def _read_sum(words: npt.NDArray[np.int64], parts: int) -> int:
    """Each of ``parts`` threads sums one contiguous slice. (The same loop written inline in
    the prange body is not vectorised and runs ~7x slower, measuring numba, not memory.)"""
    per = words.size // parts
    total = 0
    for p in prange(parts):
        hi = words.size if p == parts - 1 else (p + 1) * per
        total += _sum_slice(words[p * per : hi])
    return total


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run a block with numba's pool limited to n threads (capped at what numba has)."""
    import numba

    old = numba.get_num_threads()
    # NUMBA_NUM_THREADS: numba.config sets it from the environment at import, out of a
    # type checker's sight
    numba.set_num_threads(max(1, min(n, int(vars(numba.config)["NUMBA_NUM_THREADS"]))))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _read_buffer(mib: int) -> npt.NDArray[np.int64]:
    return np.ones(mib * (1 << 20) // 8, dtype=np.int64)  # ones(): every page faulted in


def _numba_pass(words: npt.NDArray[np.int64], threads: int) -> float:
    """GB/s of one timed pass (the caller holds numba_threads(threads))."""
    t0 = time.perf_counter()
    _read_sum(words, threads)
    return words.nbytes / (time.perf_counter() - t0) / GB


def measure_bandwidth(threads: int, mib: int = 1024, reps: int = 5) -> Bandwidth:
    """Best-of-``reps`` read bandwidth in GB/s over a buffer of ``mib`` MiB (make it >> caches)."""
    words = _read_buffer(mib)
    with numba_threads(threads):
        _read_sum(words[: 1 << 12], threads)  # compile outside the timing
        runs = [_numba_pass(words, threads) for _ in range(reps)]
    return Bandwidth("numba", threads, max(runs), [round(r, 3) for r in runs])


def _c_read_pass() -> Callable[[npt.NDArray[np.int64], int], float] | None:
    """The C core's read pass (rwe_read_bandwidth), or None where the C engine is not built."""
    try:
        from ._c_engine import read_bandwidth
    except ImportError:
        return None
    return read_bandwidth


def _c_pass(words: npt.NDArray[np.int64], threads: int) -> float | None:
    """GB/s of one C pass; None without the C engine or when its threads cannot start."""
    c_read = _c_read_pass()
    if c_read is None:
        return None
    try:
        return c_read(words, threads)
    except (RwkvEdgeError, MemoryError):  # RWE_ERR_NOMEM (a thread did not start): MemoryError
        return None


def measure_bandwidth_c(threads: int, mib: int = 1024, reps: int = 5) -> Bandwidth | None:
    """Best-of-``reps`` bandwidth by the C core; None without it."""
    words = _read_buffer(mib)
    runs = [_c_pass(words, threads) for _ in range(reps)]
    if any(r is None for r in runs):
        return None
    got = [float(r) for r in runs if r is not None]
    return Bandwidth("c", threads, max(got), [round(r, 3) for r in got])


def _alternating_passes(
    words: npt.NDArray[np.int64], threads: int, reps: int, use_c: bool
) -> tuple[Bandwidth, Bandwidth | None]:
    """reps passes of each method over the same buffer, taking turns (and swapping who goes
    first every rep), so that both read the same pages under the same bursts of other load."""
    nb: list[float] = []
    cb: list[float | None] = []
    with numba_threads(threads):
        _read_sum(words[: 1 << 12], threads)  # compile outside the timing
        for rep in range(reps):
            if rep % 2 and use_c:
                cb.append(_c_pass(words, threads))
            nb.append(_numba_pass(words, threads))
            if rep % 2 == 0 and use_c:
                cb.append(_c_pass(words, threads))
    numba_bw = Bandwidth("numba", threads, max(nb), [round(r, 3) for r in nb])
    if not use_c or any(c is None for c in cb):
        return numba_bw, None
    c_runs = [float(c) for c in cb if c is not None]
    return numba_bw, Bandwidth("c", threads, max(c_runs), [round(r, 3) for r in c_runs])


def _bw_json(bw: Bandwidth) -> dict[str, Any]:
    return {
        **asdict(bw),
        "median_gbps": round(bw.median_gbps, 3),
        "p75_gbps": round(bw.p75_gbps, 3),
    }


def bandwidth_table(thread_counts: list[int], plan: BenchPlan) -> dict[str, Any]:
    """Both methods for every thread count (numba alone without the C engine); the
    roofline uses the better of the two bests.

    The cross-check compares the methods' upper quartiles: a single lucky pass on a
    shared machine moves a best-of figure, and the per-pass bandwidth there can be bimodal
    (passes of 31, 15, 32, 15, 31 ... GB/s), which puts a median on either mode by
    chance; the upper quartile needs a quarter of the passes in the fast mode.
    """
    table: dict[str, Any] = {
        "buffer_mib": plan.bandwidth_mib,
        "reps": plan.bandwidth_reps,
        "by_threads": {},
    }
    words = _read_buffer(plan.bandwidth_mib)
    for t in sorted(set(thread_counts)):
        nb, cb = _alternating_passes(words, t, plan.bandwidth_reps, _c_read_pass() is not None)
        entry: dict[str, Any] = {
            "numba": _bw_json(nb),
            "c": _bw_json(cb) if cb else None,
            "roofline_gbps": max(nb.best_gbps, cb.best_gbps if cb else 0),
        }
        if cb:
            entry["c_over_numba"] = cb.p75_gbps / nb.p75_gbps
            entry["c_over_numba_median"] = cb.median_gbps / nb.median_gbps
            entry["cross_check_ok"] = abs(entry["c_over_numba"] - 1) <= CROSS_CHECK_TOLERANCE
        table["by_threads"][str(t)] = entry
    del words
    return table


# ---------------------------------------------------------------------------
# Model facts: bytes per token, state size, the KV cache a transformer would need
# ---------------------------------------------------------------------------


def file_weight_bytes(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Bytes read per decoded token as stored in the file, and the matrices' format.

    Every tensor is read once per token except the embedding, of which one row is.
    """
    with open_checkpoint(path) as ck:
        emb = ck["emb.weight"]
        total = sum(t.nbytes for name, t in ck.items() if name != "emb.weight")
        fmt = ck["blocks.0.att.key.weight"].dtype
        return total + emb.nbytes // emb.shape[0], fmt


def kv_cache_bytes(config: ModelConfig, context: int) -> int:
    """A transformer of the same depth and width keeps K and V for every past position."""
    return 2 * config.n_layer * config.n_embd * context * KV_BYTES_PER_VALUE


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS mark (Linux >= 4.0), so a run's peak is its own and
    not the bandwidth buffer's; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last reset_peak_rss (VmHWM), else the process's ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak if platform.system() == "Darwin" else peak * 1024)


def _cpuinfo_first(path: str) -> dict[str, str]:
    """Each field's first value in a cpuinfo file (the first processor's; ARM
    kernels put "Hardware" in a section of its own after the processors)."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _amd_core(family: int, flags: set[str]) -> str | None:
    """The AMD microarchitecture of a CPU family: hosts that report the same
    model name ("AMD EPYC") differ in it, and with it in what the kernels
    can do (Zen 5 runs 512-bit vectors at full width, Zen 4 in two halves)."""
    if family == 26:
        return "Zen 5"
    if family == 25:
        return "Zen 4" if "avx512f" in flags else "Zen 3"
    if family == 23:
        return "Zen / Zen 2"
    return None


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, with the family and model numbers (and the core
    design where they name one) on x86."""
    info = _cpuinfo_first(cpuinfo)
    name = info.get("model name") or info.get("Model") or info.get("Hardware")
    if not name:
        return platform.processor() or platform.machine()
    family, model = info.get("cpu family"), info.get("model")
    if not (family and model and family.isdigit() and model.isdigit()):
        return name
    core = None
    if info.get("vendor_id") == "AuthenticAMD":
        core = _amd_core(int(family), set(info.get("flags", "").split()))
    detail = f"family {family}, model {model}"
    return f"{name} ({core}: {detail})" if core else f"{name} ({detail})"


def system_info() -> dict[str, Any]:
    import numba

    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ---------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------


def spread(samples_s: list[float]) -> dict[str, float]:
    """Median and spread of per-token times, in ms."""
    ms = sorted(s * 1e3 for s in samples_s)
    q = np.percentile(ms, [10, 25, 75, 90])
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "p10_ms": float(q[0]),
        "p25_ms": float(q[1]),
        "p75_ms": float(q[2]),
        "p90_ms": float(q[3]),
    }


def time_decode(model: Any, state: Any, tokens: npt.NDArray[np.int32], warmup: int) -> list[float]:
    """Seconds per token for tokens[warmup:], fed one at a time (logits computed each time)."""
    times: list[float] = []
    for i, tok in enumerate(tokens):
        t0 = time.perf_counter()
        model.forward(int(tok), state)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def time_prefill(model: Any, tokens: npt.NDArray[np.int32], reps: int = 1) -> dict[str, Any]:
    """One prompt from a fresh state (last logits only, as generation needs), ``reps``
    times: the median run is the figure (one run on a shared machine is one draw)."""
    runs = []
    for _ in range(reps):
        state = model.new_state()
        t0 = time.perf_counter()
        model.forward(tokens, state)
        runs.append(time.perf_counter() - t0)
    dt = statistics.median(runs)
    return {
        "tokens": len(tokens),
        "seconds": dt,
        "tokens_per_s": len(tokens) / dt,
        "runs_seconds": runs,
    }


def context_sweep(model: Any, plan: BenchPlan, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Decode speed and RSS at growing positions of one state, advanced in prompt-sized chunks.

    Decoding at each point runs on a copy, so the state sits exactly at the position.
    """
    cfg, state, pos, out = model.config, model.new_state(), 0, []
    for target in sorted(plan.context_positions):
        while pos < target:
            n = min(plan.context_chunk, target - pos)
            model.forward(rng.integers(0, cfg.n_vocab, n, dtype=np.int32), state)
            pos += n
        probe = state.copy()
        toks = rng.integers(0, cfg.n_vocab, plan.context_decode + 2, dtype=np.int32)
        d = spread(time_decode(model, probe, toks, warmup=2))
        out.append(
            {
                "position": target,
                "decode_median_ms": d["median_ms"],
                "decode_p90_ms": d["p90_ms"],
                "rss_bytes": current_rss_bytes(),
                "state_bytes": cfg.state_len * 4,
                "transformer_kv_cache_bytes": kv_cache_bytes(cfg, target),
            }
        )
    return out


# ---------------------------------------------------------------------------
# One configuration, then the whole run
# ---------------------------------------------------------------------------


def _engine_facts(model: Any) -> dict[str, Any]:
    """What the engine says of itself where it says it (the C engine: ISA, threads, bytes,
    and the bytes it copied at load into its kernels' own layout)."""
    facts: dict[str, Any] = {}
    for key in ("weight_bytes", "isa", "n_threads", "repacked_bytes"):
        val = getattr(model.engine, key, None)
        if val is not None:
            facts[key] = val if isinstance(val, int | float) else str(val)
    return facts


PassFn = Callable[[npt.NDArray[np.int64], int], float]


def pass_function() -> tuple[str, PassFn]:
    """One timed read pass (GB/s) by the C core where it is built, else by numba
    (also when the C pass cannot start its threads)."""

    def numba_pass(words: npt.NDArray[np.int64], threads: int) -> float:
        with numba_threads(threads):
            return _numba_pass(words, threads)

    if _c_read_pass() is None:
        return "numba", numba_pass
    return "c", lambda words, threads: _c_pass(words, threads) or numba_pass(words, threads)


def paired_decode(
    model: Any,
    state: Any,
    toks: npt.NDArray[np.int32],
    threads: int,
    plan: BenchPlan,
    bw_pass: PassFn,
) -> list[dict[str, float]]:
    """plan.paired_blocks decode blocks, each between two bandwidth passes.

    The buffer lives only here, so it is in no RSS figure. The token after each pass is
    not timed: the pass has flushed the caches, which holds the state and the scratch.
    """
    words = _read_buffer(plan.bandwidth_mib)
    bw_pass(words[: 1 << 12], threads)  # compile / warm outside the timing
    before = bw_pass(words, threads)
    blocks, k = [], 0
    for _ in range(plan.paired_blocks):
        model.forward(int(toks[k % len(toks)]), state)
        ms = []
        for _ in range(plan.paired_tokens):
            k += 1
            t0 = time.perf_counter()
            model.forward(int(toks[k % len(toks)]), state)
            ms.append((time.perf_counter() - t0) * 1e3)
        after = bw_pass(words, threads)
        blocks.append(
            {
                "bandwidth_before_gbps": before,
                "bandwidth_after_gbps": after,
                "decode_median_ms": statistics.median(ms),
            }
        )
        before = after
    del words
    return blocks


def bench_one(
    path: Path, opts: BenchOptions, plan: BenchPlan, bw_pass: PassFn | None = None
) -> dict[str, Any]:
    """Load, decode, prefill (and sweep context) for one configuration."""
    from .model import Model

    rng = np.random.default_rng(plan.seed)
    peak_is_own = reset_peak_rss()

    def load() -> tuple[Any, float]:
        t0 = time.perf_counter()
        model = Model.load(path, backend=opts.backend, threads=opts.threads, isa=opts.isa)
        return model, time.perf_counter() - t0

    with numba_threads(opts.threads):
        model, load_s = load()
        try:
            result = {
                **_measure(model, opts, plan, rng, load_s, bw_pass),
                "peak_rss_scope": "this run" if peak_is_own else "process",
            }
        finally:
            model.close()
        # Once more with the file in the page cache (the run has just read all of it):
        # the first load also pays for reading what it touches from disk.
        model, result["reload_s"] = load()
        model.close()
    return result


def _measure(
    model: Any,
    opts: BenchOptions,
    plan: BenchPlan,
    rng: np.random.Generator,
    load_s: float,
    bw_pass: PassFn | None,
) -> dict[str, Any]:
    vocab = model.config.n_vocab
    state = model.new_state()
    t0 = time.perf_counter()
    model.forward(int(rng.integers(vocab)), state)  # page-in, JIT, thread-pool start
    first_ms = (time.perf_counter() - t0) * 1e3
    rss_loaded = current_rss_bytes()
    toks = rng.integers(0, vocab, plan.warmup + plan.n_decode, dtype=np.int32)
    decode = spread(time_decode(model, state, toks, plan.warmup))
    prefill = [
        time_prefill(model, rng.integers(0, vocab, n, dtype=np.int32), plan.prefill_reps)
        for n in plan.prefill_lengths
    ]
    ctx = context_sweep(model, plan, rng) if plan.context_positions else None
    facts = _engine_facts(model)
    label = f"{model.backend}/{facts.get('isa', opts.isa)}/{opts.threads}t"  # as resolved
    peak_rss = peak_rss_bytes()  # before the paired blocks' bandwidth buffer
    paired = (
        paired_decode(model, state, toks, opts.threads, plan, bw_pass)
        if bw_pass and plan.paired_blocks > 0
        else None
    )
    return {
        "label": label,
        "options": asdict(opts),
        "backend": model.backend,
        "engine": facts,
        "load_s": load_s,
        "first_token_ms": first_ms,
        "decode": decode,
        "prefill": prefill,
        "context": ctx,
        "rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": peak_rss,
        "paired": paired,
    }


def _add_roofline(run: dict[str, Any], weight_bytes: int, bw: dict[str, Any]) -> None:
    """achieved GB/s = bytes per token / median time; ratio to the same thread count's bandwidth."""
    entry = bw["by_threads"][str(run["options"]["threads"])]
    achieved = weight_bytes / (run["decode"]["median_ms"] / 1e3) / GB
    run["weight_bytes_per_token"] = weight_bytes
    run["achieved_gbps"] = achieved
    run["bandwidth_gbps"] = entry["roofline_gbps"]
    run["roofline_ms"] = weight_bytes / (entry["roofline_gbps"] * GB) * 1e3
    run["roofline_ratio"] = achieved / entry["roofline_gbps"]
    if run.get("paired"):
        ratios, bws = [], []
        for b in run["paired"]:
            bw_b = (b["bandwidth_before_gbps"] + b["bandwidth_after_gbps"]) / 2
            b["ratio"] = weight_bytes / (b["decode_median_ms"] / 1e3) / GB / bw_b
            ratios.append(b["ratio"])
            bws.append(bw_b)
        run["paired_roofline_ratio"] = statistics.median(ratios)
        run["paired_bandwidth_gbps"] = statistics.median(bws)
        run["paired_decode_median_ms"] = statistics.median(
            b["decode_median_ms"] for b in run["paired"]
        )


def _compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How much faster run a is than run b (> 1: a is faster)."""
    return {
        "a": a["label"],
        "b": b["label"],
        "decode_speedup": b["decode"]["median_ms"] / a["decode"]["median_ms"],
        "prefill_speedup": {
            str(pa["tokens"]): pa["tokens_per_s"] / pb["tokens_per_s"]
            for pa, pb in zip(a["prefill"], b["prefill"], strict=True)
        },
    }


def bench_model(
    path: str | os.PathLike[str], runs: list[BenchOptions], plan: BenchPlan | None = None
) -> dict[str, Any]:
    """The whole benchmark of one model file: bandwidth first (no model in memory), then each run.

    Two runs make a `vs` comparison (first against second).
    """
    if not runs:
        raise ArgumentError("bench_model needs at least one configuration")
    plan = plan or BenchPlan()
    p = Path(path)
    with open_checkpoint(p) as ck:
        cfg = ck.config
    file_bytes, fmt = file_weight_bytes(p)
    bw = bandwidth_table([1, *(r.threads for r in runs)], plan)
    method, bw_pass = pass_function()
    results = [bench_one(p, r, plan, bw_pass) for r in runs]
    bw["paired_method"] = method
    for r in results:
        _add_roofline(r, r["engine"].get("weight_bytes", file_bytes), bw)
    return {
        "schema": SCHEMA,
        "system": system_info(),
        "bandwidth": bw,
        "plan": asdict(plan),
        "model": {
            "path": str(p),
            "name": p.name,
            "file_bytes": p.stat().st_size,
            "format": fmt,
            "config": asdict(cfg),
            "shape": f"{cfg.n_layer}x{cfg.n_embd}",
            "weight_bytes_per_token_file": file_bytes,
            "state_bytes": cfg.state_len * 4,
        },
        "runs": results,
        "vs": _compare(results[0], results[1]) if len(results) == 2 else None,
    }


# ---------------------------------------------------------------------------
# The readable table
# ---------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    """A plain-text summary of a bench_model result."""
    m = result["model"]
    per_tok = m["weight_bytes_per_token_file"] / 1e6
    lines = [
        f"{m['name']}: {m['shape']} {m['format']}, {per_tok:.1f} MB read per token"
        f", state {m['state_bytes'] / 1e6:.2f} MB",
        f"CPU: {result['system']['cpu']} ({result['system']['logical_cpus']} logical)",
    ]
    for t, e in result["bandwidth"]["by_threads"].items():
        c = f", C {e['c']['best_gbps']:.1f}" if e["c"] else ", C n/a"
        lines.append(f"bandwidth {t}t: numba {e['numba']['best_gbps']:.1f}{c} GB/s")
    lines.append(
        f"{'run':<18}{'decode ms/tok':>15}{'p10-p90':>14}{'GB/s':>8}{'roofline':>10}"
        f"{'paired':>8}"
        + "".join(f"{'pp' + str(p['tokens']) + ' tok/s':>14}" for p in result["runs"][0]["prefill"])
    )
    for r in result["runs"]:
        d = r["decode"]
        lines.append(
            f"{r['label']:<18}{d['median_ms']:>15.2f}"
            f"{d['p10_ms']:>7.2f}-{d['p90_ms']:<6.2f}{r['achieved_gbps']:>8.1f}"
            f"{r['roofline_ratio']:>9.0%} "
            + (f"{r['paired_roofline_ratio']:>7.0%} " if r.get("paired") else f"{'-':>7} ")
            + "".join(f"{p['tokens_per_s']:>14.1f}" for p in r["prefill"])
        )
        lines += _format_context(r.get("context"))
    if result.get("vs"):
        v = result["vs"]
        lines.append(f"vs: {v['a']} decodes {v['decode_speedup']:.2f}x as fast as {v['b']}")
    return "\n".join(lines)


def _format_context(ctx: list[dict[str, Any]] | None) -> list[str]:
    if not ctx:
        return []
    out = [f"  {'position':>9}{'decode ms':>11}{'RSS MB':>9}{'state MB':>10}{'KV cache MB':>13}"]
    for c in ctx:
        rss = c["rss_bytes"] / 1e6 if c["rss_bytes"] else float("nan")
        out.append(
            f"  {c['position']:>9}{c['decode_median_ms']:>11.2f}{rss:>9.0f}"
            f"{c['state_bytes'] / 1e6:>10.2f}{c['transformer_kv_cache_bytes'] / 1e6:>13.0f}"
        )
    return out
