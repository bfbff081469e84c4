"""Benchmark infrastructure: the synthetic checkpoint writer and the bench library.

Nothing here asserts on a timing (the machine is shared); the bench test only
checks that a run produces every field with sane types and arithmetic.
"""

from __future__ import annotations

import itertools
import json
import pickle
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rwkv_edge import bench
from rwkv_edge import synthetic as ms
from rwkv_edge.checkpoint import open_checkpoint
from rwkv_edge.config import ModelConfig

from .conftest import load_script

TINY = {"n_layer": 2, "n_embd": 128, "n_vocab": 300}  # two heads of 64: real head size


def _write(tmp: Path, dtype: str, zip64: bool = False, seed: int = 0) -> Path:
    path = tmp / f"syn-{dtype}-{int(zip64)}-{seed}.pth"
    ms.write_synthetic(path, ms.SyntheticSpec(**TINY, dtype=dtype, seed=seed), force_zip64=zip64)
    return path


@pytest.fixture(scope="module")
def tiny_bf16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("syn"), "bf16")


# ---------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------


def test_real_shapes() -> None:
    # FFN widths of the released v5 models, and the 7B file size in bf16 (~15 GB).
    assert [ms.SyntheticSpec(*ms.SHAPES[s]).n_ffn for s in ms.SHAPES] == [2688, 3584, 7168, 14336]
    eagle = ms.SyntheticSpec(*ms.SHAPES["32x4096"], dtype="bf16")
    assert eagle.n_head == 64
    assert 14.9e9 < ms.checkpoint_bytes(eagle) < 15.2e9
    assert ms.parse_shape("3x192") == (3, 192)
    with pytest.raises(ValueError):
        ms.parse_shape("24by1024")
    with pytest.raises(ValueError):
        ms.SyntheticSpec(2, 100).check()  # not a multiple of the head size


@pytest.mark.parametrize(("dtype", "zip64"), [("fp32", False), ("fp16", True), ("bf16", True)])
def test_three_readers_agree(tmp_path: Path, dtype: str, zip64: bool) -> None:
    torch = pytest.importorskip("torch")
    path = _write(tmp_path, dtype, zip64)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    with open_checkpoint(path) as ck:
        assert ck.config == ModelConfig("5.2", 2, 128, 2, 64, 448, 300)
        assert list(ck) == list(sd)  # same names, same (BlinkDL) order
        for name, t in sd.items():
            assert np.array_equal(t.float().numpy(), ck[name].to_f32()), name
    assert (
        sd["emb.weight"].dtype
        == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    )


def test_rwkv_pip_reads_it(tiny_bf16: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("rwkv")
    import os

    os.environ.setdefault("RWKV_JIT_ON", "0")
    os.environ.setdefault("RWKV_CUDA_ON", "0")
    from rwkv.model import RWKV

    sd = torch.load(tiny_bf16, map_location="cpu", weights_only=True)
    m = RWKV(model=str(tiny_bf16), strategy="cpu fp32")
    assert m.version == 5.2
    # the pip package transposes matrices and turns time_decay into exp(-exp(w)) at load
    key = "blocks.1.att.key.weight"
    assert torch.equal(m.w[key], sd[key].float().t())
    decay = torch.exp(-torch.exp(sd["blocks.1.att.time_decay"].float()))
    assert torch.equal(m.w["blocks.1.att.time_decay"].flatten(), decay.flatten())
    logits, _ = m.forward([1, 2, 3], None)
    assert torch.isfinite(logits).all() and 0.1 < float(logits.std()) < 10


def test_values_are_plausible(tiny_bf16: Path) -> None:
    with open_checkpoint(tiny_bf16) as ck:
        decay = np.exp(-np.exp(ck["blocks.0.att.time_decay"].to_f32()))
        assert decay.min() >= 0.69 and decay.max() <= 0.999
        assert decay.min() < 0.72 and decay.max() > 0.99  # spans the range
        mixes = np.concatenate([ck[f"blocks.1.att.time_mix_{x}"].to_f32().ravel() for x in "kvrg"])
        assert mixes.min() > 0 and mixes.max() < 1
        assert abs(float(ck["ln_out.weight"].to_f32().mean()) - 1) < 0.05
        assert float(np.abs(ck["blocks.0.att.time_faaaa"].to_f32()).max()) < 1
        assert float(np.abs(ck["emb.weight"].to_f32()).std()) < 0.05
        key = ck["blocks.0.att.key.weight"].to_f32()
        assert abs(float(key.std()) * np.sqrt(128) - 1) < 0.1  # N(0, 1/sqrt(fan_in))


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b = (tmp_path / "a", tmp_path / "b")
    a.mkdir(), b.mkdir()
    pa, pb = _write(a, "fp16"), _write(b, "fp16")
    assert pa.read_bytes() == pb.read_bytes()
    assert _write(a, "fp16", seed=1).read_bytes() != pa.read_bytes()


def test_data_is_64_byte_aligned(tiny_bf16: Path) -> None:
    import struct
    import zipfile

    raw = tiny_bf16.read_bytes()
    with zipfile.ZipFile(tiny_bf16) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            n, e = struct.unpack_from("<HH", raw, info.header_offset + 26)
            assert (info.header_offset + 30 + n + e) % 64 == 0, info.filename


@pytest.mark.parametrize("v", [0, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**40])
def test_pickle_ints(v: int) -> None:
    assert pickle.loads(b"\x80\x02" + ms._p_int(v) + b".") == v


# ---------------------------------------------------------------------------
# The bench library
# ---------------------------------------------------------------------------


def test_bandwidth_is_positive() -> None:
    bw = bench.measure_bandwidth(1, mib=16, reps=2)
    assert bw.method == "numba" and len(bw.runs_gbps) == 2 and bw.best_gbps > 0
    assert bw.best_gbps == pytest.approx(max(bw.runs_gbps), rel=1e-3)


def _c_available() -> bool:
    from rwkv_edge.model import c_backend_available

    return c_backend_available()


needs_c = pytest.mark.skipif(not _c_available(), reason="the C engine is not built")


@needs_c
def test_c_bandwidth_is_positive() -> None:
    bw = bench.measure_bandwidth_c(2, mib=16, reps=2)
    assert bw is not None and bw.method == "c" and bw.threads == 2 and bw.best_gbps > 0


@needs_c
def test_c_bandwidth_refuses_bad_arguments() -> None:
    from rwkv_edge._c_engine import read_bandwidth
    from rwkv_edge.errors import ArgumentError

    words = np.ones(1024, np.int64)
    for threads in (0, 257):
        with pytest.raises(ArgumentError, match="1-256 threads"):
            read_bandwidth(words, threads)
    with pytest.raises(ArgumentError):
        read_bandwidth(words[:0], 1)


def test_bench_runs_no_file_from_disk() -> None:
    """`rwkv-edge bench` and `make-synthetic` find, compile and load nothing from the
    disk around them: what they measure and write with ships in the package."""
    import inspect

    from rwkv_edge.cli import bench_cmd

    for mod in (bench, bench_cmd, ms):
        text = inspect.getsource(mod)
        for smell in ("subprocess", "ctypes", "CDLL", "Path.cwd", "spec_from_file_location"):
            assert smell not in text, (mod.__name__, smell)


@needs_c
def test_bandwidth_table_cross_checks_upper_quartiles() -> None:
    plan = bench.BenchPlan(bandwidth_mib=16, bandwidth_reps=3)
    table = bench.bandwidth_table([1, 2], plan)
    assert table["reps"] == 3 and set(table["by_threads"]) == {"1", "2"}
    for t, e in table["by_threads"].items():
        n, c = e["numba"], e["c"]
        assert n["threads"] == c["threads"] == int(t)
        assert len(n["runs_gbps"]) == len(c["runs_gbps"]) == 3
        assert n["median_gbps"] == pytest.approx(statistics.median(n["runs_gbps"]))
        assert n["p75_gbps"] == pytest.approx(float(np.percentile(n["runs_gbps"], 75)), rel=1e-3)
        assert e["c_over_numba"] == pytest.approx(c["p75_gbps"] / n["p75_gbps"], rel=1e-3)
        assert e["c_over_numba_median"] == pytest.approx(
            c["median_gbps"] / n["median_gbps"], rel=1e-3
        )
        assert e["roofline_gbps"] == max(n["best_gbps"], c["best_gbps"])
        assert e["cross_check_ok"] == (abs(e["c_over_numba"] - 1) <= bench.CROSS_CHECK_TOLERANCE)


_AMD = (
    "vendor_id\t: AuthenticAMD\ncpu family\t: {fam}\nmodel\t\t: 2\n"
    "model name\t: AMD EPYC\nflags\t\t: fpu {flags}\n"
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            _AMD.format(fam=26, flags="avx512f") + "\n" + _AMD.format(fam=25, flags=""),
            "AMD EPYC (Zen 5: family 26, model 2)",
        ),
        (_AMD.format(fam=25, flags="avx2 avx512f"), "AMD EPYC (Zen 4: family 25, model 2)"),
        (_AMD.format(fam=25, flags="avx2"), "AMD EPYC (Zen 3: family 25, model 2)"),
        (
            "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
            "model name\t: Intel(R) Xeon(R) Platinum 8480+\n",
            "Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143)",
        ),
        (
            "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nHardware\t: Some SoC\n",
            "Some SoC",
        ),
    ],
)
def test_cpu_name_names_the_core(tmp_path: Path, text: str, want: str) -> None:
    """Two hosts both called "AMD EPYC" were a Zen 4 and a Zen 5; the figures
    of the performance page differ between them, so the name must tell."""
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert bench.cpu_name(str(path)) == want


def test_kv_cache_and_spread() -> None:
    cfg = ModelConfig("5.2", 24, 2048, 32, 64, 7168, 65536)
    assert bench.kv_cache_bytes(cfg, 32768) == 2 * 24 * 2048 * 32768 * 2  # 6.4 GB of fp16
    s = bench.spread([0.001 * i for i in range(1, 11)])
    assert s["n"] == 10 and s["median_ms"] == pytest.approx(5.5)
    assert s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(10)
    assert s["p10_ms"] == pytest.approx(1.9)


def test_parse_vs() -> None:
    base = bench.BenchOptions(backend="c", threads=2, isa="auto")
    assert bench.parse_vs("threads=1", base) == bench.BenchOptions("c", 1, "auto")
    assert bench.parse_vs("1", base).threads == 1
    assert bench.parse_vs("ref", base).isa == "ref"
    assert bench.parse_vs("numba", base).backend == "numba"
    assert bench.parse_vs("isa=ref,threads=1", base) == bench.BenchOptions("c", 1, "ref")
    for bad in ("threads=0", "color=red", "threads=2"):
        with pytest.raises(ValueError):
            bench.parse_vs(bad, base)


RUN_FIELDS = {
    "label",
    "options",
    "backend",
    "engine",
    "load_s",
    "first_token_ms",
    "decode",
    "prefill",
    "context",
    "rss_after_load_bytes",
    "peak_rss_bytes",
    "weight_bytes_per_token",
    "achieved_gbps",
    "bandwidth_gbps",
    "roofline_ms",
    "roofline_ratio",
    "peak_rss_scope",
    "reload_s",
    "paired",
    "paired_roofline_ratio",
    "paired_bandwidth_gbps",
    "paired_decode_median_ms",
}


@pytest.fixture(scope="module")
def bench_result(tiny_bf16: Path) -> dict[str, Any]:
    backend = "c" if _c_available() else "numba"
    plan = bench.BenchPlan(
        n_decode=4,
        warmup=1,
        prefill_lengths=(3, 8),
        context_positions=(0, 8),
        context_chunk=4,
        context_decode=2,
        bandwidth_mib=16,
        bandwidth_reps=1,
        paired_blocks=3,
        paired_tokens=2,
    )
    runs = [bench.BenchOptions(backend, 2), bench.BenchOptions(backend, 1)]
    return bench.bench_model(tiny_bf16, runs, plan)


def test_bench_json_has_every_field(bench_result: dict[str, Any]) -> None:
    r = bench_result
    assert r["schema"] == bench.SCHEMA
    assert r["model"]["shape"] == "2x128" and r["model"]["format"] == "bf16"
    # every tensor but the embedding, plus one embedding row, in bf16
    n_params = sum(t.numel for t in ms.tensor_plans(ms.SyntheticSpec(**TINY)))
    assert r["model"]["weight_bytes_per_token_file"] == 2 * (n_params - 299 * 128)
    assert set(r["bandwidth"]["by_threads"]) == {"1", "2"}
    for run, threads in zip(r["runs"], (2, 1), strict=True):
        assert set(run) >= RUN_FIELDS
        assert run["options"]["threads"] == threads and run["label"].endswith(f"/{threads}t")
        assert run["decode"]["n"] == 4 and run["decode"]["median_ms"] > 0
        assert [p["tokens"] for p in run["prefill"]] == [3, 8]
        for p in run["prefill"]:  # the median of the plan's 3 runs
            assert len(p["runs_seconds"]) == 3
            assert p["seconds"] == statistics.median(p["runs_seconds"])
            assert p["tokens_per_s"] == pytest.approx(p["tokens"] / p["seconds"])
        assert [c["position"] for c in run["context"]] == [0, 8]
        assert run["context"][1]["transformer_kv_cache_bytes"] == 2 * 2 * 128 * 8 * 2
        gbps = run["weight_bytes_per_token"] / run["decode"]["median_ms"] * 1e3 / 1e9
        assert run["achieved_gbps"] == pytest.approx(gbps)
        assert run["roofline_ratio"] == pytest.approx(gbps / run["bandwidth_gbps"])
        _check_paired(run)
    assert r["vs"]["a"] == r["runs"][0]["label"] and r["vs"]["decode_speedup"] > 0
    assert "decode ms/tok" in bench.format_report(r)
    json.dumps(r)  # JSON-ready as it is


def _check_paired(run: dict[str, Any]) -> None:
    """Each block against the mean of the passes around it; the passes chain block to block."""
    blocks = run["paired"]
    assert len(blocks) == 3
    for prev, b in itertools.pairwise(blocks):
        assert b["bandwidth_before_gbps"] == prev["bandwidth_after_gbps"]
    ratios = []
    for b in blocks:
        assert b["bandwidth_before_gbps"] > 0 and b["bandwidth_after_gbps"] > 0
        bw = (b["bandwidth_before_gbps"] + b["bandwidth_after_gbps"]) / 2
        gbps = run["weight_bytes_per_token"] / b["decode_median_ms"] * 1e3 / 1e9
        assert b["ratio"] == pytest.approx(gbps / bw)
        ratios.append(b["ratio"])
    assert run["paired_roofline_ratio"] == pytest.approx(statistics.median(ratios))


def test_performance_page_renders(bench_result: dict[str, Any], tmp_path: Path) -> None:
    page = load_script("benchmarks/make_performance_page.py")
    (tmp_path / "2x128-bf16.json").write_text(json.dumps(bench_result))
    results, matrix = page.load_results(tmp_path)
    md = page.render(results, matrix)
    assert "| 2x128 | bf16 | 2 |" in md and "| 2x128 | bf16 | 1 |" in md
    assert "not measured by us" in md  # rwkv.cpp's figures are labelled as quoted


def _fake_quality() -> dict[str, Any]:
    def fmt(name: str, size: int, bits: float, ppl: float) -> dict[str, Any]:
        return {
            "format": name,
            "file_bytes": size,
            "bits_per_weight": bits,
            "ppl": ppl,
            "ppl_ratio_to_f32": ppl / 20.0,
            "tokens": 999,
            "tokens_per_s": 1234.4,
            "threads": 2,
        }

    q8 = fmt("q8_0", 9_138_304, 8.58, 20.01)
    q8["same_bytes_as_packaged"] = True
    return {
        "schema": "rwkv-edge-quality/1",
        "model": {"checkpoint": "x.pth", "shape": "8x256", "n_params": 8_418_304},
        "text": {"file": "held.txt", "bytes": 5000, "max_tokens": None},
        "eval": {"chunk": 256, "threads": None, "engine": "c"},
        "formats": [
            fmt("f32", 33_777_600, 32.0, 20.0),
            q8,
            fmt("q4_0 rtn", 5_992_384, 5.59, 20.5),
        ],
        "baseline": {
            "numba": {"tokens": 99, "ppl": 21.0},
            "c": {"tokens": 99, "ppl": 21.0000021},
            "ppl_rel_diff": 1e-7,
        },
        "system": {"date_utc": "2026-01-01T00:00:00Z", "logical_cpus": 2},
        "loadavg_before": [0.5, 0, 0],
        "loadavg_after": [0.7, 0, 0],
    }


def test_performance_page_quality_section(bench_result: dict[str, Any], tmp_path: Path) -> None:
    page = load_script("benchmarks/make_performance_page.py")
    (tmp_path / "2x128-bf16.json").write_text(json.dumps(bench_result))
    results, matrix = page.load_results(tmp_path)
    without = page.render(results, matrix, page.load_quality(tmp_path))
    assert "## Quality" not in without and without == page.render(results, matrix)
    (tmp_path / "quality.json").write_text(json.dumps(_fake_quality()))
    results, matrix = page.load_results(tmp_path)  # quality.json is not a bench result
    assert [r["_file"] for r in results] == ["2x128-bf16.json"]
    md = page.render(results, matrix, page.load_quality(tmp_path))
    assert "## Quality (demo model, held-out text)" in md
    assert "| format | file MB | bits/weight | perplexity | Δ vs f32 | eval tok/s |" in md
    assert "| f32 | 33.78 | 32.00 | 20.000 | +0.00 % | 1234 |" in md
    assert "| q8_0 | 9.14 | 8.58 | 20.010 | +0.05 % | 1234 |" in md
    assert "| q4_0 rtn | 5.99 | 5.59 | 20.500 | +2.50 % | 1234 |" in md
    assert "all 1,000 tokens of `held.txt`" in md and "2 threads" in md
    assert "perplexity 21.0000; the C engine on the same tokens 21.0000" in md
    assert "byte-for-byte identical" in md
    assert md.index("## Quality") < md.index("## Quoted reference figures")
    # only the new section differs from the page without it
    section = "\n".join(page.quality_section(_fake_quality())) + "\n"
    assert md.replace(section, "") == without


def test_scaling_line_fit() -> None:
    scaling = load_script("benchmarks/scaling.py")
    straight = scaling.line_fit([1, 2, 4], [2.5, 4.5, 8.5])  # y = 2x + 0.5
    assert straight["slope"] == pytest.approx(2) and straight["intercept"] == pytest.approx(0.5)
    assert straight["worst_rel_gap"] == pytest.approx(0, abs=1e-12)
    bent = scaling.line_fit([1, 2, 3], [1, 4, 9])  # y = x^2: line 4x - 10/3
    assert bent["slope"] == pytest.approx(4) and bent["intercept"] == pytest.approx(-10 / 3)
    assert bent["worst_rel_gap"] == pytest.approx(1 / 3)  # at x = 1: |1 - 2/3| / 1


def test_performance_page_scaling_section(bench_result: dict[str, Any], tmp_path: Path) -> None:
    page = load_script("benchmarks/make_performance_page.py")
    (tmp_path / "2x128-bf16.json").write_text(json.dumps(bench_result))
    results, matrix = page.load_results(tmp_path)
    assert page.load_scaling(tmp_path) is None
    sc = {
        "schema": "rwkv-edge-scaling/1",
        "started_utc": "2026-01-01T00:00:00Z",
        "prefill": [
            {
                "model": "m.gguf",
                "threads": 2,
                "reps": 3,
                "points": [{"tokens": 64, "seconds": 0.1, "tokens_per_s": 640.0}],
                "fit": {"slope": 0.0015, "intercept": 0.004, "worst_rel_gap": 0.031},
            }
        ],
        "quantize": {
            "format": "q8_0",
            "method": "rtn",
            "points": [
                {"shape": "12x768", "input_bytes": 4e8, "output_bytes": 2e8, "seconds": 2.0}
            ],
            "fit_per_gb": {"slope": 5.0, "intercept": 0.25, "worst_rel_gap": 0.02},
        },
    }
    (tmp_path / "scaling.json").write_text(json.dumps(sc))
    results, matrix = page.load_results(tmp_path)  # scaling.json is not a bench result
    assert [r["_file"] for r in results] == ["2x128-bf16.json"]
    md = page.render(results, matrix, None, page.load_scaling(tmp_path))
    assert "## How cost grows with work" in md
    assert "line 1.500 ms/token +4 ms, largest gap 3.1%" in md
    assert "| 64 | 100 | 640 |" in md
    assert "line 5.0 s/GB +0.2 s, largest gap 2.0%" in md
    assert "| 12x768 | 0.40 | 0.20 | 2.0 | 200 |" in md
