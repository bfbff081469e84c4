#!/usr/bin/env python3
"""Load: many concurrent streaming clients on one `rwkv-edge serve`, loopback only.

    python benchmarks/serve_load.py [--model PATH] [--clients 32] [--rounds 3] [--json OUT]

Starts the server on 127.0.0.1, then runs --rounds rounds; in each, --clients
threads each send --requests streamed completions one after another (distinct
prompts and seeds, --max-tokens each). Every round is bounded: a client stops
sending once --time-limit seconds have passed. Reports per-request time to first
token and total latency (p50/p99), aggregate completion tokens/s per round, the
error count, the server's batching (/health) and its resident memory (VmRSS)
after start-up and after each round: the state cache is capped (--cache-mb), so
RSS should settle after the first round. One JSON object on stdout (and in
--json). On demand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from rwkv_edge.bench import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve_util import ServerProcess

WORDS = ["sea", "ship", "light", "keeper", "stair", "lamp", "rock", "night", "storm"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_request(client: httpx.Client, srv: ServerProcess, i: int, max_tokens: int) -> dict:
    prompt = f"The {WORDS[i % len(WORDS)]} and the {WORDS[(i * 7) % len(WORDS)]} were"
    body = {"model": srv.name, "prompt": prompt, "max_tokens": max_tokens, "seed": i}
    body.update(stream=True, stream_options={"include_usage": True})
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    with client.stream("POST", srv.url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if "error" in ev:
                raise RuntimeError(ev["error"]["message"])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ttft is None and ev["choices"] and ev["choices"][0]["text"]:
                ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {"ttft": ttft if ttft is not None else total, "latency": total, "tokens": tokens}


def run_round(
    client: httpx.Client, srv: ServerProcess, args: argparse.Namespace, base: int
) -> dict[str, Any]:
    results: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.time_limit

    def client_loop(c: int) -> None:
        for k in range(args.requests):
            if time.monotonic() > deadline:
                return
            try:
                res = one_request(client, srv, base + c * args.requests + k, args.max_tokens)
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)

    def pct(key: str, q: float) -> float:
        xs = sorted(r[key] for r in results)
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else 0.0

    return {
        "requests": len(results),
        "errors": len(errors),
        "error_samples": errors[:3],
        "seconds": round(wall, 3),
        "completion_tokens": tokens,
        "aggregate_tokens_per_s": round(tokens / wall, 1),
        "ttft_ms_p50": pct("ttft", 0.5),
        "ttft_ms_p99": pct("ttft", 0.99),
        "latency_ms_p50": pct("latency", 0.5),
        "latency_ms_p99": pct("latency", 0.99),
        "latency_ms_mean": round(1000 * statistics.fmean(r["latency"] for r in results), 1)
        if results
        else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the built-in model)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2, help="per client per round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per round")
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    srv_args = ["--threads", str(args.threads), "--cache-mb", str(args.cache_mb)]
    srv_args += ["--max-batch", str(args.clients)]
    srv = ServerProcess(([args.model] if args.model else []) + srv_args)
    t_start = time.time()
    # One client (a pool of connections) for all threads: building an httpx.Client
    # loads the CA bundle, which, 32 times at once, held up the first requests by seconds.
    limits = httpx.Limits(max_connections=args.clients + 4)
    try:
        with httpx.Client(timeout=args.time_limit + 60, limits=limits) as client:
            one_request(client, srv, 0, 4)  # warm-up
            rss = [round(rss_mb(srv.proc.pid), 1)]
            rounds = []
            for r in range(args.rounds):
                base = 1 + r * args.clients * args.requests
                rounds.append(run_round(client, srv, args, base))
                rss.append(round(rss_mb(srv.proc.pid), 1))
        health = srv.wait_idle()
    finally:
        srv.stop()
    result = {
        "benchmark": "serve_load",
        "model": args.model or "built-in demo",
        "cpu": cpu_name(),
        "threads": args.threads,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "max_tokens": args.max_tokens,
        "cache_mb": args.cache_mb,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "rounds": rounds,
        "rss_mb_after_start_and_each_round": rss,
        "server": {k: health[k] for k in ("decode", "tokens_generated", "batches", "state_cache")},
        "mean_batch": round(health["tokens_generated"] / max(1, health["batches"]), 2),
    }
    out = json.dumps(result, indent=1)
    print(out)
    if args.json:
        args.json.write_text(out + "\n")
    return 1 if any(r["errors"] for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
