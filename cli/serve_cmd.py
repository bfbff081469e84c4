"""``rwkv-edge serve``: the OpenAI-compatible HTTP server (needs the ``server`` extra)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from .bench_cmd import ISAS
from .run_cmd import BACKENDS, load_model, state_option, warm_up

DEFAULT_CACHE_MB = 1024


@click.command("serve")
@click.argument(
    "model_path",
    required=False,
    metavar="[MODEL]",
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free."
)
@click.option("--api-key", default=None, help="Require 'Authorization: Bearer KEY' on /v1/.")
@click.option("--model-name", default=None, help="Name in the API [default: the file's stem].")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--threads", "-t", type=click.IntRange(1), default=None, help="Engine threads.")
@click.option(
    "--isa", type=click.Choice(ISAS), default="auto", show_default=True, help="C kernel set."
)
@state_option
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Sequences decoded together; more requests wait.",
)
@click.option(
    "--max-prompt-tokens",
    type=click.IntRange(1),
    default=16384,
    show_default=True,
    help="Longer prompts are refused (400).",
)
@click.option(
    "--max-tokens-cap",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Largest max_tokens a request may ask for.",
)
@click.option(
    "--cache-mb",
    type=click.IntRange(0),
    default=DEFAULT_CACHE_MB,
    show_default=True,
    help="State cache size in MiB (0: no cache).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the state cache here across restarts.",
)
@click.option(
    "--shutdown-timeout",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="Seconds running requests get to finish on SIGINT/SIGTERM.",
)
def serve_command(
    model_path: Path | None,
    host: str,
    port: int,
    api_key: str | None,
    model_name: str | None,
    backend: str,
    threads: int | None,
    isa: str,
    state_file: Path | None,
    max_batch: int,
    max_prompt_tokens: int,
    max_tokens_cap: int,
    cache_mb: int,
    state_dir: Path | None,
    shutdown_timeout: int,
) -> None:
    """Serve MODEL (default: the built-in one) over an OpenAI-style HTTP API.

    /v1/completions, /v1/chat/completions (streaming or not), /v1/models,
    /health, and a chat page at /. Concurrent requests are decoded together;
    each conversation's state is cached, so a request that extends an earlier
    one reads only its new tokens.
    """
    try:
        from rwkv_edge.server import require_http_stack

        require_http_stack()
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    from rwkv_edge.chat_format import DEMO_MIN_REPLY_CHARS
    from rwkv_edge.server.api import Limits
    from rwkv_edge.server.app import Server, bind, run
    from rwkv_edge.state_cache import StateCache

    if cache_mb == 0 and state_dir is not None:
        raise click.UsageError("--state-dir needs the state cache (--cache-mb > 0)")
    if state_file is not None and state_dir is not None:
        # the saved states would continue another initial state after a restart
        raise click.UsageError("--state and --state-dir cannot be used together yet")
    try:
        sock = bind(host, port)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    model = load_model(model_path, backend, threads, isa, state_file)
    try:
        warm_up(model)
        limits = Limits(
            model_name or model.path.stem,
            int(model.tokenizer.vocab_size),
            max_prompt_tokens,
            max_tokens_cap,
            default_max_tokens=min(256 if model_path else 128, max_tokens_cap),
            chat_min_chars=0 if model_path is not None else DEMO_MIN_REPLY_CHARS,
        )
        cache = StateCache(cache_mb << 20) if cache_mb else None
        server = Server(
            model, limits, api_key=api_key, cache=cache, state_dir=state_dir, max_batch=max_batch
        )
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        addr: Any = sock.getsockname()
        click.echo(
            f"serving {limits.model_name} on http://{_url_host(addr[0])}:{addr[1]} (Ctrl-C stops)",
            err=True,
        )
        run(server, sock, shutdown_timeout=shutdown_timeout)
    finally:
        sock.close()
        model.close()
    click.echo("server stopped", err=True)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


command = serve_command
