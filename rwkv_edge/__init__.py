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

__all__ = [
    "ArgumentError",
    "Checkpoint",
    "FormatError",
    "IoError",
    "Model",
    "ModelConfig",
    "RwkvEdgeError",
    "ShapeError",
    "State",
    "TokenError",
    "UnsafeCheckpointError",
    "UnsupportedIsaError",
    "VersionError",
    "c_backend_available",
    "open_checkpoint",
]
