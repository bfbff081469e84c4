"""``rwkv-edge quantize``, ``info`` and ``eval-ppl``: options in, library calls out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rwkv_edge.errors import RwkvEdgeError

_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1")


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


def _read_regular(path: Path) -> bytes:
    """A file's bytes; a FIFO or device is an error, not a wait or an endless read."""
    from rwkv_edge.tensors import open_regular

    try:
        with open_regular(path) as f:
            return f.read()
    except RwkvEdgeError as e:
        raise _fail(e) from None


def _read_tokenizer_file(path: Path) -> tuple[str, bytes]:
    """A SentencePiece .model (binary protobuf) or a World vocab (text) file."""
    data = _read_regular(path)
    if path.suffix == ".model":
        return "sentencepiece", data
    try:
        first = data.decode("utf-8").lstrip().split("\n", 1)[0]
    except UnicodeDecodeError:
        return "sentencepiece", data
    if first.split(" ", 1)[0].isdigit():
        return "world", data
    raise click.BadParameter(f"{path} is neither a SentencePiece .model nor a World vocab file")


def _calibration_stats(
    src: Path, text_file: Path, tokenizer: tuple[str, bytes] | None, max_tokens: int
) -> dict[str, Any]:
    from rwkv_edge.quantize.calibration import collect_stats
    from rwkv_edge.quantize.convert import default_tokenizer, open_source

    from rwkv_edge.tokenizer import tokenizer_from_kind

    with open_source(src) as ckpt:
        kind, data = tokenizer or default_tokenizer(ckpt)
        tokens = tokenizer_from_kind(kind, data).encode_bytes(_read_regular(text_file))
        tokens = tokens[:max_tokens]
        click.echo(f"calibrating on {len(tokens)} tokens of {text_file.name} ...", err=True)
        cache: dict[str, Any] = {}

        def weight(name: str) -> Any:
            if name not in cache:  # dequantize each tensor once (a GGUF source may be 4-bit)
                cache[name] = ckpt[name].to_f32()
            return cache[name]

        return collect_stats(weight, ckpt.config, tokens)


def _print_report(result: Any) -> None:
    click.echo(
        f"{'tensor':40s} {'type':5s} {'shape':>14s} {'bytes':>11s} {'rel rms':>9s} {'max abs':>9s}"
    )
    for t in result.tensors:
        shape = "x".join(map(str, t.shape))
        click.echo(
            f"{t.name:40s} {t.dtype:5s} {shape:>14s} {t.nbytes:>11d} {t.rel_rms:>9.2e} "
            f"{t.max_abs:>9.2e}"
        )
    click.echo(
        f"{len(result.tensors)} tensors, {result.n_params:,} parameters, "
        f"{result.bits_per_weight:.2f} bits/weight, file {result.file_size:,} bytes, "
        f"{result.seconds:.1f} s -> {result.dst}"
    )


@click.command("quantize")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--type",
    "qtype",
    type=click.Choice(_TYPES),
    default="q4_0",
    show_default=True,
    help="storage type of the big matrices",
)
@click.option("--emb-type", type=click.Choice(_TYPES), default=None, help="override emb.weight")
@click.option("--head-type", type=click.Choice(_TYPES), default=None, help="override head.weight")
@click.option(
    "--method",
    type=click.Choice(["search", "rtn"]),
    default="search",
    show_default=True,
    help="q4_0 scales: weighted search, or ggml round-to-nearest",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="text whose activations weight the 4-bit scale search",
)
@click.option("--calibration-tokens", type=click.IntRange(2), default=4096, show_default=True)
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="tokenizer file to embed (SentencePiece .model or World vocab)",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the per-tensor report as JSON here",
)
@click.option("--force", is_flag=True, help="overwrite DST if it exists")
def quantize_command(
    src: Path,
    dst: Path,
    qtype: str,
    emb_type: str | None,
    head_type: str | None,
    method: str,
    calibration: Path | None,
    calibration_tokens: int,
    tokenizer: Path | None,
    report: Path | None,
    force: bool,
) -> None:
    """Convert checkpoint SRC (.pth, safetensors, HF dir, rwkv.cpp .bin, GGUF) to GGUF DST."""
    from rwkv_edge.quantize.convert import convert
    from rwkv_edge.quantize.recipe import make_recipe

    try:
        if dst.exists() and not force:
            raise click.ClickException(f"{dst} exists; pass --force to overwrite it")
        tok = _read_tokenizer_file(tokenizer) if tokenizer else None
        stats = (
            _calibration_stats(src, calibration, tok, calibration_tokens) if calibration else None
        )
        recipe = make_recipe(
            qtype, emb=emb_type, head=head_type, method=method, calibrated=stats is not None
        )
        result = _run_convert(convert, src, dst, recipe, stats, tok, force)
    except RwkvEdgeError as e:
        raise _fail(e) from None
    _print_report(result)
    if report:
        from rwkv_edge.atomic_file import atomic_output

        try:
            with atomic_output(report, overwrite=True) as out:
                out.file.write((json.dumps(result.to_json(), indent=1) + "\n").encode())
        except RwkvEdgeError as e:
            raise _fail(e) from None


def _run_convert(
    convert: Any,
    src: Path,
    dst: Path,
    recipe: Any,
    stats: Any,
    tok: tuple[str, bytes] | None,
    force: bool,
) -> Any:
    """convert() under a progress bar sized in source bytes (tensor names, ETA on a TTY)."""
    from rwkv_edge.quantize.convert import open_source

    with open_source(src) as ckpt:
        total = sum(t.nbytes for t in ckpt.values())
    current = {"name": ""}

    def show(_: int | None) -> str | None:  # the bar's items are byte counts
        return current["name"] or None

    with click.progressbar(
        length=total, label="quantizing", show_eta=True, show_pos=True, item_show_func=show
    ) as bar:

        def progress(name: str, nbytes: int) -> None:
            current["name"] = name
            bar.update(nbytes)

        return convert(
            src, dst, recipe, importance=stats, tokenizer=tok, force=force, progress=progress
        )


@click.command("info")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def info_command(file: Path, as_json: bool) -> None:
    """Metadata and tensor table of any model file or checkpoint."""
    from rwkv_edge.quantize.convert import open_source

    try:
        ckpt = open_source(file)
    except RwkvEdgeError as e:
        raise _fail(e) from None
    with ckpt:
        meta = _printable_meta(ckpt)
        if as_json:
            click.echo(json.dumps(meta, indent=1, default=str))
            return
        for k, v in meta.items():
            click.echo(f"{k}: {v}")
        total = 0
        for name, t in ckpt.items():
            total += t.nbytes
            click.echo(
                f"  {name:44s} {t.dtype:5s} {'x'.join(map(str, t.shape)):>14s} {t.nbytes:>11d}"
            )
        click.echo(f"{len(ckpt)} tensors, {total:,} bytes of tensor data")


def _printable_meta(ckpt: Any) -> dict[str, Any]:
    c = ckpt.config
    meta: dict[str, Any] = {
        "file": str(ckpt.path),
        "kind": ckpt.kind,
        "version": c.version,
        "layers": c.n_layer,
        "n_embd": c.n_embd,
        "heads": f"{c.n_head} x {c.head_size}",
        "n_ffn": c.n_ffn,
        "vocab": c.n_vocab,
        "ln_eps": c.ln_eps,
        "gn_eps": c.gn_eps,
    }
    if c.is_v7:
        meta["lora_ranks"] = f"w {c.lora_w}, a {c.lora_a}, v {c.lora_v}, g {c.lora_g}"
    m = ckpt.metadata
    for key in (
        "tokenizer_kind",
        "emb_ln_dtype",
        "file_version",
        "source_name",
        "source_sha256",
        "recipe",
    ):
        if m.get(key) is not None:
            meta[key] = m[key]
    if m.get("tokenizer_data"):
        meta["tokenizer_bytes"] = len(m["tokenizer_data"])
    return meta


@click.command("eval-ppl")
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, path_type=Path))
@click.argument("textfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--backend", type=click.Choice(["auto", "c", "numba"]), default="auto", show_default=True
)
@click.option("--max-tokens", type=click.IntRange(2), default=None, help="use the first N tokens")
@click.option(
    "--chunk",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="tokens per forward call (the state carries over)",
)
def eval_ppl_command(
    model_path: Path, textfile: Path, backend: str, max_tokens: int | None, chunk: int
) -> None:
    """Perplexity of MODEL on TEXTFILE (its own tokenizer; bytes for vocab-256 models)."""
    from rwkv_edge.quantize.evaluate import perplexity, tokenize_text

    from rwkv_edge.model import Model

    try:
        with Model.load(model_path, backend=backend) as model:
            tokens = tokenize_text(model, _read_regular(textfile))[:max_tokens]
            res = perplexity(model, tokens, chunk)
            used = model.backend
    except RwkvEdgeError as e:
        raise _fail(e) from None
    click.echo(
        f"tokens {res.tokens}  ppl {res.ppl:.4f}  seconds {res.seconds:.2f}  "
        f"backend {used}  model {model_path.name}"
    )


commands = [quantize_command, info_command, eval_ppl_command]
