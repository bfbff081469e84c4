"""The ``rwkv-edge`` command: a click group; each command parses options and calls the library."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rwkv-edge")
def main() -> None:
    """Run, quantize and inspect RWKV-v5 models on the CPU."""
