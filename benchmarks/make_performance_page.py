#!/usr/bin/env python3
"""Generate docs/PERFORMANCE.md and docs/performance.png from benchmarks/results/*.json.

    python benchmarks/make_performance_page.py [--results DIR] [--docs DIR]

Every figure on the page comes from a JSON file written by ``rwkv-edge bench``
(through benchmarks/run_matrix.py) or, for the quality section, by
benchmarks/quality.py (quality.json); the only typed-in numbers are rwkv.cpp's
and PyTorch's, quoted from the benchmark issue and labelled as such. Never edit
the generated page by hand: rerun the matrix (or quality.py) and this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHAPE_ORDER = ("12x768", "24x1024", "24x2048", "32x4096")
FORMAT_ORDER = ("q8_0", "q4_0", "q4_1", "f16")

# Quoted from project issue 7: rwkv.cpp on this machine kind, 2 threads, measured by the
# issue's author (not by us). decode ms/token and prefill tokens/s at 512 tokens.
QUOTED_RWKV_CPP_DECODE_MS = {
    "12x768": {"q8_0": 5.5, "q4_0": 5.0, "f16": 7.1},
    "24x1024": {"q8_0": 13.8, "q4_0": 12.8, "f16": 19.0},
    "24x2048": {"q8_0": 41.0, "q4_0": 35.1, "f16": 67.9},
}
QUOTED_RWKV_CPP_PREFILL = {
    "12x768": {"q8_0": 605, "q4_0": 545},
    "24x1024": {"q8_0": 190, "q4_0": 165},
    "24x2048": {"q8_0": 54, "q4_0": 46},
}
QUOTED_PYTORCH_FP32 = {"12x768": (34, 750), "24x1024": (80, 245)}  # ms/token, prefill tok/s
QUOTED_BANDWIDTH = {"1": 43, "2": 51}  # GB/s on the issue author's machine ("noisy")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_results(results: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(bench results sorted by shape and format, the matrix summaries merged, or None)."""
    runs = []
    for f in sorted(results.glob("*.json")):
        data = json.loads(f.read_text())
        if data.get("schema", "").startswith("rwkv-edge-bench/"):
            data["_file"] = f.name
            runs.append(data)
    return sorted(runs, key=_order), merge_summaries(results, runs)


def merge_summaries(results: Path, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """matrix*.json of every run_matrix invocation; a skip that a later run filled is dropped."""
    summaries = [json.loads(f.read_text()) for f in sorted(results.glob("matrix*.json"))]
    if not summaries:
        return None
    have = {(r["model"]["shape"], r["model"]["format"]) for r in runs}
    skipped = {
        (s["shape"], s["format"]): s
        for m in summaries
        for s in m.get("skipped", [])
        if (s["shape"], s["format"]) not in have
    }
    return {
        "runs": [r for m in summaries for r in m["runs"]],
        "skipped": list(skipped.values()),
        "context": [m["context"] for m in summaries if m.get("context")],
    }


def _load_named(results: Path, name: str) -> dict[str, Any] | None:
    """results/NAME.json when it holds schema rwkv-edge-NAME/..., else None."""
    f = results / f"{name}.json"
    if not f.exists():
        return None
    data = json.loads(f.read_text())
    return data if data.get("schema", "").startswith(f"rwkv-edge-{name}/") else None


def load_quality(results: Path) -> dict[str, Any] | None:
    """benchmarks/quality.py's quality.json, or None where it has not been run."""
    return _load_named(results, "quality")


def load_scaling(results: Path) -> dict[str, Any] | None:
    """benchmarks/scaling.py's scaling.json, or None where it has not been run."""
    return _load_named(results, "scaling")


def _order(r: dict[str, Any]) -> tuple[int, int, str]:
    m = r["model"]
    shape = SHAPE_ORDER.index(m["shape"]) if m["shape"] in SHAPE_ORDER else 99
    fmt = FORMAT_ORDER.index(m["format"]) if m["format"] in FORMAT_ORDER else 99
    return shape, fmt, r["_file"]


def decode_runs(results: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(result, run) for every run of the matrix proper (context sweeps have their own table)."""
    return [(r, run) for r in results if not r["_file"].startswith("context-") for run in r["runs"]]


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def machine_section(results: list[dict[str, Any]], matrix: dict[str, Any] | None) -> list[str]:
    sys_info = results[0]["system"]
    lines = [
        "## Machine",
        "",
        f"- CPU: **{sys_info['cpu']}**, {sys_info['logical_cpus']} logical CPUs "
        f"({sys_info['machine']}); Python {sys_info['python']}, numpy "
        f"{sys_info['numpy']}, numba {sys_info['numba']}.",
        f"- Runs: {_date_span(results)}.",
    ]
    if matrix:
        loads = [
            x
            for r in matrix["runs"] + matrix["context"]
            if "loadavg_before" in r
            for x in (r["loadavg_before"][0], r["loadavg_after"][0])
        ]
        lines.append(
            f"- 1-minute load average around the runs: {min(loads):.1f} to "
            f"{max(loads):.1f} on {sys_info['logical_cpus']} CPUs"
            + (
                " (other work was running: treat absolute figures as noisy and "
                "prefer the ratios, each measured in one run)."
                if max(loads) > 1.5
                else " (quiet)."
            )
        )
    return [*lines, "", *bandwidth_section(results)]


def _date_span(results: list[dict[str, Any]]) -> str:
    dates = sorted(r["system"]["date_utc"] for r in results)
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def bandwidth_section(results: list[dict[str, Any]]) -> list[str]:
    """Every bench run measured bandwidth right before its model: show the spread over runs."""
    rows = []
    for t in sorted({t for r in results for t in r["bandwidth"]["by_threads"]}, key=int):
        entries = [
            r["bandwidth"]["by_threads"][t] for r in results if t in r["bandwidth"]["by_threads"]
        ]
        numba = [e["numba"]["best_gbps"] for e in entries]
        c = [e["c"]["best_gbps"] for e in entries if e.get("c")]
        agree = [e["cross_check_ok"] for e in entries if "cross_check_ok" in e]
        ratios = [e["c_over_numba"] for e in entries if "c_over_numba" in e]
        rows.append(
            [
                t,
                _span(numba),
                _span(c) if c else "n/a",
                _span(ratios, 2) if ratios else "n/a",
                f"{sum(agree)}/{len(agree)}" if agree else "n/a",
                str(QUOTED_BANDWIDTH.get(t, "–")),
            ]
        )
    reps = sorted({r["bandwidth"].get("reps", 5) for r in results})
    return [
        f"### Memory read bandwidth (GB/s, best of {'/'.join(map(str, reps))} passes over "
        "1 GiB, measured in every run)",
        "",
        "The numba loop and the plain C loop read one buffer, taking turns pass by pass; "
        "the check compares the upper quartiles of their passes. Not the bests: one lucky "
        "pass moves a best. Not the medians: the per-pass bandwidth of this shared machine "
        "is often bimodal (in one run of 2026-11-29 the numba passes alternated between "
        "about 31 and 15 GB/s), which puts a median on either mode by chance.",
        "",
        *_table(
            [
                "threads",
                "numba prange (median, min–max over runs)",
                "plain C pthreads (median, min–max)",
                "C / numba, upper quartiles (median, min–max over runs)",
                "C within 15% of numba",
                "issue author's figure (quoted)",
            ],
            rows,
        ),
        "",
        "The roofline of each run is the better of the two methods in that same run.",
        "",
    ]


def _span(xs: list[float], digits: int = 1) -> str:
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}–{max(xs):.{digits}f})"


def _plan_values(results: list[dict[str, Any]], key: str) -> str:
    """A plan setting as the runs had it ("1/3" where they differ, "?" where absent)."""
    vals = sorted({r["plan"].get(key) for r in results}, key=str)
    return "/".join("?" if v is None else str(v) for v in vals)


def _paired(run: dict[str, Any]) -> str:
    if not run.get("paired"):
        return "–"
    return f"{run['paired_roofline_ratio']:.0%} ({run['paired_bandwidth_gbps']:.1f})"


def decode_section(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r, run in decode_runs(results):
        m, d, t = r["model"], run["decode"], run["options"]["threads"]
        quoted = QUOTED_RWKV_CPP_DECODE_MS.get(m["shape"], {}).get(m["format"]) if t == 2 else None
        rows.append(
            [
                m["shape"],
                m["format"],
                str(t),
                f"{run['weight_bytes_per_token'] / 1e6:.0f}",
                f"{d['median_ms']:.2f}" + (f" (n={d['n']})" if d["n"] != 64 else ""),
                f"{d['p10_ms']:.2f}–{d['p90_ms']:.2f}",
                f"{run['roofline_ms']:.2f}",
                f"{run['achieved_gbps']:.1f}",
                f"{run['bandwidth_gbps']:.1f}",
                f"{run['roofline_ratio']:.0%}",
                _paired(run),
                f"{quoted:.1f}" if quoted else "–",
                f"{quoted / d['median_ms']:.2f}×" if quoted else "–",
            ]
        )
    return [
        "## Decode (one token at a time)",
        "",
        "Median of 64 tokens after 8 warm-up tokens (fewer where marked n=), each timed "
        "around one `Model.forward(token, state)` call of the Python API, logits included: "
        "the figure is what an application calling the API sees. "
        "*Roofline ms* = bytes read per token / bandwidth measured in the same run; "
        "*of roofline* = achieved GB/s ÷ that bandwidth. "
        f"*Paired* = the median, over {_plan_values(results, 'paired_blocks')} blocks of "
        f"{_plan_values(results, 'paired_tokens')} tokens, of each block's achieved GB/s ÷ "
        "the mean of the bandwidth passes just before and just after it (with the run's "
        "thread count): the bandwidth of a shared machine moves by a third within minutes, "
        "and this compares decode with the bandwidth of the same seconds. "
        "The rwkv.cpp column is **quoted from the benchmark issue (measured by its author on "
        "this machine kind, 2 threads), not measured by us**; *rwkv.cpp ÷ ours* > 1 means we "
        "are faster.",
        "",
        *_table(
            [
                "shape",
                "format",
                "threads",
                "MB/token",
                "ms/token",
                "p10–p90 ms",
                "roofline ms",
                "GB/s",
                "bandwidth GB/s",
                "of roofline",
                "of roofline, paired (bandwidth GB/s)",
                "rwkv.cpp ms (quoted)",
                "rwkv.cpp ÷ ours",
            ],
            rows,
        ),
        "",
    ]


def prefill_section(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r, run in decode_runs(results):
        m, t = r["model"], run["options"]["threads"]
        pf = {p["tokens"]: p["tokens_per_s"] for p in run["prefill"]}
        quoted = QUOTED_RWKV_CPP_PREFILL.get(m["shape"], {}).get(m["format"]) if t == 2 else None
        rows.append(
            [m["shape"], m["format"], str(t)]
            + [f"{pf[n]:.0f}" if n in pf else "–" for n in (64, 512)]
            + [
                f"~{quoted}" if quoted else "–",
                f"{pf[512] / quoted:.2f}×" if quoted and 512 in pf else "–",
            ]
        )
    return [
        "## Prefill (one prompt through the sequence path)",
        "",
        "Tokens per second for a 64- and a 512-token prompt from a fresh state (the median "
        f"of {_plan_values(results, 'prefill_reps')} runs). rwkv.cpp's "
        "512-token figures are **quoted (issue author, 2 threads)**; *ours ÷ rwkv.cpp* > 1 "
        "means we are faster.",
        "",
        *_table(
            [
                "shape",
                "format",
                "threads",
                "64 tok/s",
                "512 tok/s",
                "rwkv.cpp 512 tok/s (quoted)",
                "ours ÷ rwkv.cpp",
            ],
            rows,
        ),
        "",
    ]


def threads_and_memory_section(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        if r["_file"].startswith("context-"):
            continue
        m, first = r["model"], r["runs"][0]
        vs = r.get("vs")
        rows.append(
            [
                m["shape"],
                m["format"],
                f"{m['file_bytes'] / 1e6:.0f}",
                _repacked_mb(first),
                f"{first['load_s'] * 1e3:.0f}",
                f"{first['reload_s'] * 1e3:.0f}" if "reload_s" in first else "–",
                f"{first['first_token_ms']:.0f}",
                f"{first['rss_after_load_bytes'] / 1e6:.0f}"
                if first["rss_after_load_bytes"]
                else "–",
                f"{first['peak_rss_bytes'] / 1e6:.0f}",
                f"{vs['decode_speedup']:.2f}×" if vs else "–",
                _speedup(vs, "512"),
            ]
        )
    return [
        "## Load, memory, thread scaling",
        "",
        "Load = `Model.load` (the file is memory-mapped; the first token pages weights in); "
        "it reads the header and the small vectors, from disk where they are not in the page "
        "cache. With the x86 kernels (AVX2, AVX-512) the first token also copies each "
        "quantized matrix once into their lanes layout (*repacked MB*; `RWKV_EDGE_REPACK=0` "
        "turns that off and keeps every weight in the mapping). *Reload* = a second "
        "`Model.load` of the same file at the end of the run, with the file in the page "
        "cache: the load's own cost. "
        "RSS after the first token and the process peak. Speed-ups are the first run's "
        "configuration over the second's in the same process (2 threads over 1).",
        "",
        *_table(
            [
                "shape",
                "format",
                "file MB",
                "repacked MB",
                "load ms",
                "reload ms",
                "first token ms",
                "RSS MB",
                "peak RSS MB",
                "decode 2t ÷ 1t",
                "prefill-512 2t ÷ 1t",
            ],
            rows,
        ),
        "",
    ]


def _repacked_mb(run: dict[str, Any]) -> str:
    b = run.get("engine", {}).get("repacked_bytes")
    return "–" if b is None else f"{b / 1e6:.0f}"


def _speedup(vs: dict[str, Any] | None, tokens: str) -> str:
    if not vs or tokens not in vs["prefill_speedup"]:
        return "–"
    return f"{vs['prefill_speedup'][tokens]:.2f}×"


def context_section(results: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for r in (r for r in results if r["_file"].startswith("context-")):
        run, m = r["runs"][0], r["model"]
        rows = [
            [
                str(c["position"]),
                f"{c['decode_median_ms']:.2f}",
                f"{c['rss_bytes'] / 1e6:.0f}" if c["rss_bytes"] else "–",
                f"{c['state_bytes'] / 1e6:.2f}",
                f"{c['transformer_kv_cache_bytes'] / 1e6:.0f}",
            ]
            for c in run["context"] or []
        ]
        out += [
            f"## Context length ({m['shape']} {m['format']}, {run['options']['threads']} threads)",
            "",
            "One state advanced through random tokens in 512-token chunks; decode timed on "
            "a copy at each position. The last column is the fp16 KV cache a transformer of "
            "the same depth and width (2 × layers × width × positions × 2 bytes) would hold "
            "instead of RWKV's fixed state.",
            "",
            *_table(
                [
                    "position",
                    "decode ms/token",
                    "RSS MB",
                    "RWKV state MB",
                    "transformer KV cache MB",
                ],
                rows,
            ),
            "",
        ]
    return out


def _captioned(caption: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [caption, "", *_table(header, rows), ""]


def scaling_section(sc: dict[str, Any] | None) -> list[str]:
    """Prefill time against prompt length and quantizer time against size (scaling.py)."""
    if not sc:
        return []
    out = [
        "## How cost grows with work",
        "",
        f"`benchmarks/scaling.py`, {sc['started_utc']}. Each series has a least-squares line "
        "and the largest gap between a point and that line, relative to the point: a few "
        "percent means the cost is linear in the work.",
        "",
    ]
    for pf in sc["prefill"]:
        fit = pf["fit"]
        out += _captioned(
            f"Prefill of one prompt from a fresh state, {pf['model']}, {pf['threads']} threads "
            f"(median of {pf['reps']} runs): line {fit['slope'] * 1e3:.3f} ms/token "
            f"{fit['intercept'] * 1e3:+.0f} ms, largest gap {fit['worst_rel_gap']:.1%}.",
            ["prompt tokens", "ms", "tokens/s"],
            [
                [str(p["tokens"]), f"{p['seconds'] * 1e3:.0f}", f"{p['tokens_per_s']:.0f}"]
                for p in pf["points"]
            ],
        )
    q, fit = sc["quantize"], sc["quantize"]["fit_per_gb"]
    return out + _captioned(
        f"`rwkv-edge quantize --type {q['format']} --method {q['method']}` of the synthetic "
        f"bf16 checkpoints (wall time, one process each): line {fit['slope']:.1f} s/GB "
        f"{fit['intercept']:+.1f} s, largest gap {fit['worst_rel_gap']:.1%}.",
        ["shape", "input GB", "output GB", "seconds", "MB/s in"],
        [
            [
                p["shape"],
                f"{p['input_bytes'] / 1e9:.2f}",
                f"{p['output_bytes'] / 1e9:.2f}",
                f"{p['seconds']:.1f}",
                f"{p['input_bytes'] / 1e9 / p['seconds'] * 1e3:.0f}",
            ]
            for p in q["points"]
        ],
    )


def quality_section(q: dict[str, Any] | None) -> list[str]:
    """Perplexity and file size of every format of the demo model (benchmarks/quality.py)."""
    if not q:
        return []
    rows = [
        [
            r["format"],
            f"{r['file_bytes'] / 1e6:.2f}",
            f"{r['bits_per_weight']:.2f}",
            f"{r['ppl']:.3f}",
            f"{(r['ppl_ratio_to_f32'] - 1) * 100:+.2f} %",
            f"{r['tokens_per_s']:.0f}",
        ]
        for r in q["formats"]
    ]
    fmt0, sys_info = q["formats"][0], q["system"]
    threads = fmt0.get("threads")
    lines = [
        "## Quality (demo model, held-out text)",
        "",
        f"The built-in demo model ({q['model']['shape']}, {q['model']['n_params']:,} "
        f"parameters, trained weights: `{q['model']['checkpoint']}`, see "
        "tools/train/RECIPE.md) quantized from its fp16 source checkpoint by "
        "`rwkv-edge quantize --type T` (default recipe: emb and head q8_0 in the 4-bit "
        "formats, vectors f32; *q4_0 rtn* is `--method rtn`, ggml's round-to-nearest "
        "scales; the default q4_0 searches them; q4_1 is min/max rounding), then "
        "`rwkv-edge eval-ppl` on the C engine "
        f"over {'the first' if q['text'].get('max_tokens') else 'all'} {fmt0['tokens'] + 1:,} "
        f"tokens of `{q['text']['file']}` as one sequence "
        "(every token after the first scored once). The source is fp16, so f32 and f16 "
        "hold the same values. Bits/weight count tensor data only; *Δ vs f32* is the "
        "perplexity's change against the f32 file's. Eval tok/s is the whole pass "
        f"(prefill in {q['eval']['chunk']}-token chunks, logits of every position)"
        + (f", {threads} threads" if threads else "")
        + f", {sys_info['date_utc']}, 1-minute load average {q['loadavg_before'][0]:.1f} "
        f"before and {q['loadavg_after'][0]:.1f} after on {sys_info['logical_cpus']} CPUs"
        + (
            " (other work was running: tok/s are noisy; perplexity is not)."
            if max(q["loadavg_before"][0], q["loadavg_after"][0]) > 1.5
            else "."
        ),
        "",
        *_table(["format", "file MB", "bits/weight", "perplexity", "Δ vs f32", "eval tok/s"], rows),
        "",
    ]
    b = q.get("baseline")
    if b:
        lines += [
            f"Baseline: the numba reference engine on the f32 file, first "
            f"{b['numba']['tokens'] + 1:,} tokens: perplexity {b['numba']['ppl']:.4f}; "
            f"the C engine on the same tokens {b['c']['ppl']:.4f} "
            f"(relative difference {b['ppl_rel_diff']:+.1e}).",
            "",
        ]
    same = [r for r in q["formats"] if "same_bytes_as_packaged" in r]
    if same:
        r = same[0]
        lines += [
            f"The {r['format']} file is "
            + ("byte-for-byte identical" if r["same_bytes_as_packaged"] else "**not** identical")
            + " to the packaged demo model (`rwkv_edge/data/`).",
            "",
        ]
    return lines


def quoted_section() -> list[str]:
    rows = []
    for s, dec in QUOTED_RWKV_CPP_DECODE_MS.items():
        pf, pt = QUOTED_RWKV_CPP_PREFILL[s], QUOTED_PYTORCH_FP32.get(s)
        rows.append(
            [
                s,
                str(dec["q8_0"]),
                str(dec["q4_0"]),
                str(dec["f16"]),
                f"~{pf['q8_0']}",
                f"~{pf['q4_0']}",
                f"{pt[0]} / ~{pt[1]}" if pt else "–",
            ]
        )
    return [
        "## Quoted reference figures (not measured by us)",
        "",
        "From the benchmark issue: rwkv.cpp and PyTorch (`rwkv` pip, fp32) on this machine "
        "kind, 2 threads, **measured by the issue's author**, whose machine read "
        f"~{QUOTED_BANDWIDTH['2']} GB/s with 2 threads and {QUOTED_BANDWIDTH['1']} with 1 "
        "(noisy). Compare ratios rather than raw milliseconds where bandwidth differs. "
        "The issue does not name the author's CPU, and hosts of this kind differ under one "
        'model name: our runs have had an "AMD EPYC" that was a Zen 4 (family 25; 2-thread '
        "bandwidth median 32.3 GB/s in its last matrix run) and one that was a Zen 5 "
        "(family 26; 51.3 GB/s median in its first, and 512-bit vector work at full "
        "width), so a ratio against a quoted figure mixes the "
        "hardware with the software; the CPU of our run is named under *Machine*.",
        "",
        *_table(
            [
                "shape",
                "rwkv.cpp Q8_0 ms",
                "Q4_0 ms",
                "FP16 ms",
                "Q8_0 prefill tok/s",
                "Q4_0 prefill tok/s",
                "PyTorch fp32 ms / prefill tok/s",
            ],
            rows,
        ),
        "",
    ]


def skipped_section(matrix: dict[str, Any] | None) -> list[str]:
    if not matrix or not matrix.get("skipped"):
        return []
    rows = [[s["shape"], s["format"], s["why"]] for s in matrix["skipped"]]
    return ["## Not measured", "", *_table(["shape", "format", "why"], rows), ""]


def render(
    results: list[dict[str, Any]],
    matrix: dict[str, Any] | None,
    quality: dict[str, Any] | None = None,
    scaling: dict[str, Any] | None = None,
) -> str:
    quant = sorted({r["quantizer"] for r in matrix["runs"]} - {"cached"}) if matrix else []
    head = [
        "# Performance",
        "",
        "<!-- generated by benchmarks/make_performance_page.py from "
        "benchmarks/results/*.json; do not edit by hand -->",
        "",
        "Synthetic checkpoints of the real RWKV-v5 World shapes (random weights of realistic "
        "scale from `rwkv-edge make-synthetic`: speed depends on shapes and formats, not on "
        "values), quantized with "
        + (", ".join(f"`{q}`" for q in quant) or "the project's quantizer (`rwkv_edge.quantize`)")
        + ", timed with `rwkv-edge bench` (C engine). Decode is bound by "
        "memory bandwidth, so every decode figure is shown beside its roofline.",
        "",
        "![decode ms/token against the bandwidth roofline](performance.png)",
        "",
    ]
    body = (
        machine_section(results, matrix)
        + decode_section(results)
        + prefill_section(results)
        + threads_and_memory_section(results)
        + context_section(results)
        + scaling_section(scaling)
        + quality_section(quality)
        + quoted_section()
        + skipped_section(matrix)
    )
    return "\n".join(head + body)


# ---------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------


def plot(results: list[dict[str, Any]], out: Path) -> None:
    """Left: ms/token against MB/token with the roofline; right: ours vs rwkv.cpp (quoted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.2))
    _plot_roofline(ax, results)
    _plot_vs_quoted(bx, results)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_roofline(ax: Any, results: list[dict[str, Any]]) -> None:
    markers = {"q8_0": "o", "q4_0": "s", "q4_1": "D", "f16": "^"}
    runs = decode_runs(results)
    for t, fill in ((2, True), (1, False)):
        for fmt, mk in markers.items():
            pts = [
                (run["weight_bytes_per_token"] / 1e6, run["decode"]["median_ms"])
                for r, run in runs
                if r["model"]["format"] == fmt and run["options"]["threads"] == t
            ]
            color = f"C{list(markers).index(fmt)}"
            if pts:
                ax.scatter(
                    *zip(*pts, strict=True),
                    marker=mk,
                    s=50,
                    label=f"{fmt}, {t} thr",
                    facecolors=color if fill else "none",
                    edgecolors=color,
                )
    for t, style in ((2, "-"), (1, "--")):
        bws = [run["bandwidth_gbps"] for _, run in runs if run["options"]["threads"] == t]
        if bws:
            bw = statistics.median(bws)
            xs = [
                min(run["weight_bytes_per_token"] for _, run in runs) / 1e6 * 0.8,
                max(run["weight_bytes_per_token"] for _, run in runs) / 1e6 * 1.25,
            ]
            ax.plot(
                xs,
                [x / bw for x in xs],
                "k" + style,
                lw=1,
                label=f"roofline {t} thr ({bw:.0f} GB/s, median)",
            )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="MB read per token",
        ylabel="decode ms/token (median)",
        title="Decode against the bandwidth roofline",
    )
    _plain_log_ticks(ax.xaxis, ax.yaxis)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _plot_vs_quoted(bx: Any, results: list[dict[str, Any]]) -> None:
    ours = {
        (r["model"]["shape"], r["model"]["format"]): run["decode"]["median_ms"]
        for r, run in decode_runs(results)
        if run["options"]["threads"] == 2
    }
    labels, mine, theirs = [], [], []
    for shape, fmts in QUOTED_RWKV_CPP_DECODE_MS.items():
        for fmt, q in fmts.items():
            if (shape, fmt) in ours:
                labels.append(f"{shape}\n{fmt}")
                mine.append(ours[(shape, fmt)])
                theirs.append(q)
    xs = range(len(labels))
    bx.bar([x - 0.2 for x in xs], mine, 0.4, label="rwkv-edge (measured)")
    bx.bar(
        [x + 0.2 for x in xs], theirs, 0.4, label="rwkv.cpp (quoted from the issue)", color="grey"
    )
    bx.set_xticks(list(xs), labels, fontsize=7)
    bx.set(
        ylabel="decode ms/token, 2 threads",
        yscale="log",
        title="rwkv-edge vs rwkv.cpp (quoted figures, issue author's runs)",
    )
    _plain_log_ticks(bx.yaxis)
    bx.legend(fontsize=8)
    bx.grid(True, axis="y", which="both", alpha=0.3)


def _plain_log_ticks(*axes: Any) -> None:
    """Log axes labelled 20, 50, 100 rather than 2×10¹."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    for a in axes:
        a.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(FormatStrFormatter("%g"))
        a.set_minor_formatter(FormatStrFormatter(""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--docs", type=Path, default=REPO / "docs")
    args = ap.parse_args()
    results, matrix = load_results(args.results)
    if not results:
        print(
            f"no bench results in {args.results}; run benchmarks/run_matrix.py first",
            file=sys.stderr,
        )
        return 1
    args.docs.mkdir(parents=True, exist_ok=True)
    quality = load_quality(args.results)
    scaling = load_scaling(args.results)
    (args.docs / "PERFORMANCE.md").write_text(render(results, matrix, quality, scaling) + "\n")
    plot(results, args.docs / "performance.png")
    print(f"wrote {args.docs / 'PERFORMANCE.md'} and {args.docs / 'performance.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
