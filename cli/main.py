"""The ``rwkv-edge`` command: a click group; each command parses options and calls the library.

Each command lives in its own module of this package and exports ``command``
(a click.Command); the group collects them from ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib

import click

# module name -> command; a module may also export ``commands`` (a list).
_COMMAND_MODULES = (
    "run_cmd",  # generate
    "chat_cmd",  # chat
    "quantize_cmd",  # quantize, info, eval-ppl
    "bench_cmd",  # bench, make-synthetic
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rwkv-edge")
def main() -> None:
    """Run, quantize and inspect RWKV models on the CPU (v5; v7 on the numba engine)."""


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
