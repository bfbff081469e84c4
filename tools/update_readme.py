"""Regenerate the README's generated blocks (nothing in them is typed by hand).

    python tools/update_readme.py            # both blocks
    python tools/update_readme.py --quality  # only the quality table (no model run)

samples: greedy and sampled continuations from the shipped demo model, produced by the
installed `rwkv-edge generate` command. quality: the perplexity/size table from
benchmarks/results/quality.json (written by benchmarks/quality.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["And God said", "It is a truth universally acknowledged", "hacker n."]
MODES = [["--temperature", "0"], ["--seed", "1"]]


def samples() -> str:
    out = []
    for prompt in PROMPTS:
        for mode in MODES:
            cmd = ["rwkv-edge", "generate", *mode, "-n", "48", prompt]
            text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            out.append(f'$ rwkv-edge generate {" ".join(mode)} -n 48 "{prompt}"\n{prompt}{text}')
    return "```text\n" + "\n".join(out).rstrip() + "\n```\n"


def quality() -> str:
    d = json.loads((ROOT / "benchmarks/results/quality.json").read_text())
    rows = [
        "| format | file bytes | bits/weight | perplexity | vs f32 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for f in d["formats"]:
        name = f["type"]
        if f["type"] == "q4_0":  # the only format whose scales are searched
            name += " `--method rtn`" if f["method"] == "rtn" else " (default: searched scales)"
        rows.append(
            f"| {name} | {f['file_bytes']:,} | {f['bits_per_weight']:.2f} | {f['ppl']:.3f} "
            f"| {100 * (f['ppl_ratio_to_f32'] - 1):+.2f}% |"
        )
    tokens = d["formats"][0]["tokens"]
    return (
        f"Demo model ({d['model']['shape']}, {d['model']['n_params']:,} parameters), "
        f"perplexity over all {tokens:,} scored tokens of `{d['text']['file']}` "
        f"(`benchmarks/quality.py`, run {d['system']['date_utc']}):"
        "\n\n" + "\n".join(rows) + "\n"
    )


def splice(readme: str, name: str, body: str) -> str:
    pat = rf"<!-- {name}:begin -->.*?<!-- {name}:end -->"
    new, n = re.subn(
        pat, lambda _: f"<!-- {name}:begin -->\n{body}<!-- {name}:end -->", readme, flags=re.S
    )
    if n != 1:
        sys.exit(f"README.md: the {name} markers are missing")
    return new


def main() -> None:
    path = ROOT / "README.md"
    readme = splice(path.read_text(encoding="utf-8"), "quality", quality())
    if "--quality" not in sys.argv:
        readme = splice(readme, "samples", samples())
    path.write_text(readme, encoding="utf-8")
    print("README.md regenerated")


if __name__ == "__main__":
    main()
