"""rwkv-edge: fast, exact int8/int4 RWKV-v5 inference on CPUs and ARM devices."""

from .checkpoint import Checkpoint, open_checkpoint
from .config import ModelConfig
from .errors import (
    ArgumentError,
    FormatError,
    IoError,
    RwkvEdgeError,
    ShapeError,
    TokenError,
    UnsafeCheckpointError,
    UnsupportedIsaError,
    VersionError,
)
from .model import Model, c_backend_available
from .state import State

__version__ = "0.1.0"

# Tokenizers load lazily: the World trie pulls in numba, which `import rwkv_edge` should not.
_LAZY = {
    "ByteTokenizer": "tokenizer",
    "SentencePieceTokenizer": "tokenizer",
    "WorldTokenizer": "tokenizer",
    "load_state": "state_io",
    "save_state": "state_io",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rwkv_edge' has no attribute {name!r}")


__all__ = [
    "ArgumentError",
    "ByteTokenizer",
    "Checkpoint",
    "FormatError",
    "IoError",
    "Model",
    "ModelConfig",
    "RwkvEdgeError",
    "SentencePieceTokenizer",
    "ShapeError",
    "State",
    "TokenError",
    "UnsafeCheckpointError",
    "UnsupportedIsaError",
    "VersionError",
    "WorldTokenizer",
    "c_backend_available",
    "load_state",
    "open_checkpoint",
    "save_state",
]
