"""``rwkv-edge serve``: an OpenAI-compatible HTTP server with continuous batching.

Needs the optional ``server`` extra (``pip install "rwkv-edge[server]"``:
Starlette and uvicorn); the scheduler and the API validation do not.
"""

from __future__ import annotations

from typing import Any


def require_http_stack() -> None:
    """Raise ImportError naming the extra to install when Starlette or uvicorn is missing."""
    missing = []
    for mod in ("starlette", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(
            f'rwkv-edge serve needs {" and ".join(missing)}: pip install "rwkv-edge[server]"'
        )


def __getattr__(name: str) -> Any:
    if name in ("Server", "run", "bind"):
        require_http_stack()
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
