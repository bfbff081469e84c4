"""The ``rwkv-edge`` command: a click group; each command parses options and calls the library.

Each command lives in its own module of this package and exports ``command``
(a click.Command); the group collects them from ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from types import FrameType

import click

# module name -> command; a module may also export ``commands`` (a list).
_COMMAND_MODULES = (
    "run_cmd",  # generate
    "chat_cmd",  # chat
    "quantize_cmd",  # quantize, info, eval-ppl
    "bench_cmd",  # bench, make-synthetic
    "serve_cmd",  # serve
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rwkv-edge")
def main() -> None:
    """Run, quantize and inspect RWKV models on the CPU (v5; v7 on the numba engine)."""
    tolerant_stdio()
    sigterm_as_interrupt()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_as_interrupt() -> None:
    """SIGTERM (kill, systemd, docker stop) unwinds like Ctrl-C: every ``finally`` and
    ``with`` runs, so a writer discards its unfinished file and nothing is left behind.
    Only where nobody else has claimed SIGTERM, and only for this command."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def tolerant_stdio() -> None:
    """Bytes that are not UTF-8 must not end a command in a traceback.

    stdin decodes them as surrogate escapes (PEP 383, as argv already does), which
    the tokenizers turn back into the same bytes; stdout and stderr write any
    such character as a backslash escape instead of raising UnicodeEncodeError.
    """
    for stream, errors in ((sys.stdin, "surrogateescape"), (sys.stdout, "backslashreplace"),
                           (sys.stderr, "backslashreplace")):  # fmt: skip
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # closed or detached streams
                reconfigure(errors=errors)


def _register() -> None:
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{mod_name}":
                continue  # that command set is not part of this build yet
            raise
        for cmd in getattr(mod, "commands", [getattr(mod, "command", None)]):
            if cmd is not None:
                main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
