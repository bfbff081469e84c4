#!/usr/bin/env python3
"""Time to first token along a scripted chat, with and without the state cache.

    python benchmarks/serve_ttft.py [--model PATH] [--turns 50] [--json OUT]

Starts two `rwkv-edge serve` processes on 127.0.0.1 (one with the state cache,
one with --cache-mb 0) and holds the same scripted conversation with each, turn
by turn in alternation: every turn sends the whole history (as chat clients do)
plus a new user message of the same shape, streams the reply, and times the
first content chunk. Several conversations (--repeats, each under its own system
prompt, so none reuses another's states) give a median per measured turn. With
the cache only the new turn is read, so the time stays flat; without it, the
whole history is read again and the time grows. One JSON object on stdout (and
in --json). On demand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from rwkv_edge.bench import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve_util import ServerProcess

USER = "Tell me one more thing about the old lighthouse, number {n}, in a few words."


def ask(client: httpx.Client, srv: ServerProcess, messages: list[dict[str, str]], **kw: Any) -> Any:
    """(seconds to the first content chunk, reply text, usage) of one streamed chat turn."""
    body = {"model": srv.name, "messages": messages, "stream": True, **kw}
    body["stream_options"] = {"include_usage": True}
    t0 = time.perf_counter()
    ttft = None
    parts = []
    usage: dict[str, Any] = {}
    with client.stream("POST", srv.url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            usage = ev.get("usage") or usage
            content = ev["choices"][0]["delta"].get("content") if ev["choices"] else None
            if content:
                ttft = ttft if ttft is not None else time.perf_counter() - t0
                parts.append(content)
    return (ttft if ttft is not None else time.perf_counter() - t0), "".join(parts), usage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the built-in model)")
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--measure", default="1,10,50", help="turns to report")
    ap.add_argument("--reply-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="conversations per server")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    measure = sorted({int(t) for t in args.measure.split(",") if 0 < int(t) <= args.turns})
    common = ["--threads", str(args.threads), "--max-prompt-tokens", "1000000"]
    if args.model:
        common.insert(0, args.model)
    servers = {
        "cache": ServerProcess([*common, "--cache-mb", "1024"]),
        "no_cache": ServerProcess([*common, "--cache-mb", "0"]),
    }
    ttft: dict[str, dict[int, list[float]]] = {k: {t: [] for t in measure} for k in servers}
    info: dict[str, dict[int, dict[str, int]]] = {k: {} for k in servers}
    t_start = time.time()
    try:
        with httpx.Client(timeout=300) as client:
            for srv in servers.values():  # warm-up: the first request of a process
                ask(client, srv, [{"role": "user", "content": "hello"}], max_tokens=4)
            for rep in range(args.repeats):
                talks = {
                    k: [{"role": "system", "content": f"Conversation {rep}."}] for k in servers
                }
                for turn in range(1, args.turns + 1):
                    for name, srv in servers.items():  # alternate: same moment, both servers
                        msgs = talks[name]
                        msgs.append({"role": "user", "content": USER.format(n=turn)})
                        sec, text, usage = ask(
                            client, srv, msgs, max_tokens=args.reply_tokens, seed=rep * 1000 + turn
                        )
                        msgs.append({"role": "assistant", "content": text})
                        if turn in measure:
                            ttft[name][turn].append(sec)
                            details = usage.get("prompt_tokens_details") or {}
                            info[name][turn] = {
                                "prompt_tokens": usage.get("prompt_tokens", 0),
                                "cached_tokens": details.get("cached_tokens", 0),
                            }
    finally:
        for srv in servers.values():
            srv.stop()
    result = {
        "benchmark": "serve_ttft",
        "model": args.model or "built-in demo",
        "cpu": cpu_name(),
        "threads": args.threads,
        "turns": args.turns,
        "reply_tokens": args.reply_tokens,
        "repeats": args.repeats,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "ttft_ms_median": {
            k: {str(t): round(1000 * statistics.median(v), 2) for t, v in d.items()}
            for k, d in ttft.items()
        },
        "ttft_ms_all": {
            k: {str(t): [round(1000 * x, 2) for x in v] for t, v in d.items()}
            for k, d in ttft.items()
        },
        "last_conversation_tokens": {k: {str(t): v for t, v in d.items()} for k, d in info.items()},
    }
    out = json.dumps(result, indent=1)
    print(out)
    if args.json:
        args.json.write_text(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
