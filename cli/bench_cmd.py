"""``rwkv-edge bench`` and ``rwkv-edge make-synthetic``: options in, library calls out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

ISAS = ("auto", "ref", "avx2", "avx512", "neon", "dotprod")
BACKENDS = ("auto", "c", "numba")


def _ints(text: str) -> tuple[int, ...]:
    """'64,512' -> (64, 512); '' -> ()."""
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in vals):
        raise click.BadParameter(f"values must not be negative, got {text!r}")
    return vals


@click.command("bench")
@click.argument("model", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option(
    "--threads",
    "-t",
    type=click.IntRange(1),
    default=None,
    help="Worker threads (default: every logical CPU).",
)
@click.option("--isa", type=click.Choice(ISAS), default="auto", show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option(
    "--vs",
    "vs_spec",
    default=None,
    metavar="SPEC",
    help="Also run a second configuration and compare: threads=1, isa=ref, "
    "backend=numba, or several joined by commas.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full result as JSON here.",
)
@click.option(
    "--decode",
    "n_decode",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Tokens timed for decode (after --warmup).",
)
@click.option("--warmup", type=click.IntRange(0), default=8, show_default=True)
@click.option(
    "--prefill",
    default="64,512",
    show_default=True,
    help="Prompt lengths for prefill tokens/s ('' to skip).",
)
@click.option(
    "--context",
    default="",
    metavar="POSITIONS",
    help="Context sweep positions, e.g. 0,1024,8192,32768 (slow: runs every token).",
)
@click.option("--bandwidth-mib", type=click.IntRange(16), default=1024, show_default=True)
def bench_command(
    model: Path,
    threads: int | None,
    isa: str,
    backend: str,
    vs_spec: str | None,
    json_path: Path | None,
    n_decode: int,
    warmup: int,
    prefill: str,
    context: str,
    bandwidth_mib: int,
) -> None:
    """Measure decode ms/token against the memory-bandwidth roofline, prefill and load."""
    from ..bench import BenchOptions, BenchPlan, bench_model, format_report, parse_vs
    from ..errors import RwkvEdgeError

    base = BenchOptions(backend=backend, threads=threads or os.cpu_count() or 1, isa=isa)
    plan = BenchPlan(
        n_decode=n_decode,
        warmup=warmup,
        prefill_lengths=_ints(prefill),
        context_positions=_ints(context),
        bandwidth_mib=bandwidth_mib,
    )
    try:
        runs = [base] if vs_spec is None else [base, parse_vs(vs_spec, base)]
        result = bench_model(model, runs, plan)
    except RwkvEdgeError as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_report(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        click.echo(f"wrote {json_path}")


@click.command("make-synthetic")
@click.argument("shape")
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dtype", type=click.Choice(("fp32", "fp16", "bf16")), default="bf16", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vocab", type=click.IntRange(1), default=65536, show_default=True)
def make_synthetic_command(shape: str, dst: Path, dtype: str, seed: int, vocab: int) -> None:
    """Write a random-weight RWKV-v5.2 .pth of SHAPE (12x768, 24x1024, 24x2048, 32x4096, LxC)."""
    from .. import synthetic as ms

    try:
        n_layer, n_embd = ms.parse_shape(shape)
        spec = ms.SyntheticSpec(n_layer, n_embd, n_vocab=vocab, dtype=dtype, seed=seed)
        spec.check()
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    size = ms.write_synthetic(dst, spec, progress=lambda m: click.echo("  " + m, err=True))
    click.echo(f"wrote {dst} ({size / 1e9:.2f} GB, {dtype})")


commands = [bench_command, make_synthetic_command]
