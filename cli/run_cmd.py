"""``rwkv-edge generate``: one-shot completion. Also the model and sampler options chat shares."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rwkv_edge import sampling

BACKENDS = ("auto", "c", "numba")
F = TypeVar("F", bound=Callable[..., Any])


# --state FILE (chat, generate, serve): the model's initial state from a state-tuning file.
state_option = click.option(
    "--state",
    "state_file",
    default=None,
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from this state-tuning file (blocks.N.att.time_state, .pth or safetensors).",
)


def model_options(f: F) -> F:
    """--model, --backend, --threads, --state."""
    f = state_option(f)
    f = click.option(
        "--threads",
        "-t",
        type=click.IntRange(1),
        default=None,
        help="Worker threads for the C engine (default: every logical CPU).",
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default="auto",
        show_default=True,
        help="c: the SIMD engine; numba: the reference engine.",
    )(f)
    return click.option(
        "--model",
        "-m",
        "model_path",
        default=None,
        metavar="FILE",
        type=click.Path(exists=True, dir_okay=True, path_type=Path),
        help="Model file (GGUF, .pth, safetensors, HF dir). Default: the built-in model.",
    )(f)


def sampling_options(defaults: dict[str, float]) -> Callable[[F], F]:
    """Sampler options with per-command defaults (chat and one-shot differ)."""

    def deco(f: F) -> F:
        opts = [
            ("--temperature", "temperature", click.FloatRange(0.0), "0 = greedy."),
            ("--top-p", "top_p", click.FloatRange(0.0, 1.0), "Nucleus mass kept."),
            ("--top-k", "top_k", click.IntRange(0), "Most likely tokens kept (0 = all)."),
            ("--presence-penalty", "presence_penalty", float, "Subtracted once a token appeared."),
            ("--frequency-penalty", "frequency_penalty", float, "Subtracted per (decayed) use."),
            (
                "--penalty-decay",
                "penalty_decay",
                click.FloatRange(0.0, 1.0),
                "Per-token decay of the use counts.",
            ),
        ]
        for flag, name, typ, text in reversed(opts):
            f = click.option(
                flag, name, type=typ, default=defaults[name], show_default=True, help=text
            )(f)
        return f

    return deco


def load_model(
    model_path: Path | None,
    backend: str,
    threads: int | None,
    isa: str = "auto",
    state_file: Path | None = None,
) -> Any:
    """Model.load (and its state-tuning file) with every failure turned into a one-line
    CLI error."""
    from rwkv_edge import Model
    from rwkv_edge.errors import RwkvEdgeError

    try:
        model = Model.load(model_path, backend=backend, threads=threads, isa=isa)
        if state_file is not None:
            try:
                model.load_initial_state(state_file)
            except BaseException:
                model.close()
                raise
    except ImportError as e:
        if model_path is None:
            raise click.ClickException(
                "no built-in model is available in this build; pass --model FILE"
            ) from None
        raise click.ClickException(str(e)) from None
    except (RwkvEdgeError, OSError) as e:
        what = model_path if model_path is not None else "the built-in model"
        raise click.ClickException(f"cannot load {what}: {e}") from None
    if model.tokenizer is None:
        raise click.ClickException(
            f"{model.path.name} names no tokenizer, so text cannot be generated with it"
        )
    return model


def warm_up(model: Any) -> None:
    """Run the engine once on a scratch state before anything is timed.

    The numba engine loads (or compiles) its kernels on first use, a second or
    more that would otherwise count as prompt time in --stats.
    """
    scratch = model.new_state()
    model.forward([0], scratch)
    model.forward([0, 0], scratch)  # sequence mode may be a separate kernel


ONE_SHOT_DEFAULTS: dict[str, float] = sampling.DEFAULTS.options()


@click.command("generate")
@click.argument("prompt")
@model_options
@sampling_options(ONE_SHOT_DEFAULTS)
@click.option("--max-tokens", "-n", type=click.IntRange(0), default=200, show_default=True)
@click.option("--seed", type=int, default=None, help="Fix the random draws (reproducible).")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@click.option("--stats", is_flag=True, help="Print prompt and generation speed to stderr.")
def generate_command(
    prompt: str,
    model_path: Path | None,
    backend: str,
    threads: int | None,
    state_file: Path | None,
    max_tokens: int,
    seed: int | None,
    stop: tuple[str, ...],
    stats: bool,
    **sampling: Any,
) -> None:
    """Continue PROMPT ('-' reads it from stdin) and stream the text to stdout."""
    from rwkv_edge.errors import RwkvEdgeError
    from rwkv_edge.generate import generate

    if prompt == "-":
        prompt = sys.stdin.read()
    model = load_model(model_path, backend, threads, state_file=state_file)
    if stats:
        warm_up(model)
    gen = None
    try:
        gen = generate(model, prompt, max_tokens=max_tokens, seed=seed, stop=list(stop), **sampling)
        for piece in gen:
            click.echo(piece, nl=False)
        click.echo()
    except RwkvEdgeError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo()
    finally:
        model.close()
    if stats and gen is not None:
        click.echo(gen.stats.summary(), err=True)


command = generate_command
