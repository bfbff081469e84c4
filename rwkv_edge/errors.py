"""Exceptions of rwkv-edge, one per C status code (csrc/rwkv_edge.h).

Every error a user can cause (a bad file, a bad argument) is an
``RwkvEdgeError`` with a message that names the problem.
"""

from __future__ import annotations


class RwkvEdgeError(Exception):
    """Base class of every rwkv-edge error."""


class IoError(RwkvEdgeError, OSError):
    """A file cannot be opened, mapped, read or written (RWE_ERR_IO)."""


class FormatError(RwkvEdgeError, ValueError):
    """A model, checkpoint or state file is corrupt, truncated or hostile (RWE_ERR_FORMAT)."""


class UnsafeCheckpointError(FormatError):
    """A pickle asked for something outside the tensor whitelist; nothing was executed."""


class VersionError(RwkvEdgeError, ValueError):
    """An unsupported file version or RWKV architecture version (RWE_ERR_VERSION)."""


class ShapeError(RwkvEdgeError, ValueError):
    """A tensor or buffer has the wrong shape, length or dtype (RWE_ERR_SHAPE)."""


class ArgumentError(RwkvEdgeError, ValueError):
    """An invalid argument (RWE_ERR_ARG)."""


class UnsupportedIsaError(RwkvEdgeError):
    """The requested kernel set is not supported by this CPU or build (RWE_ERR_ISA)."""


class TokenError(RwkvEdgeError, ValueError):
    """A token id is out of range for the model's vocabulary (RWE_ERR_TOKEN)."""


class InternalError(RwkvEdgeError, RuntimeError):
    """A bug in rwkv-edge (RWE_ERR_INTERNAL); please report it."""


# Index = rwe_status value; RWE_ERR_NOMEM maps to MemoryError.
STATUS_ERRORS: dict[int, type[BaseException]] = {
    1: IoError,
    2: FormatError,
    3: VersionError,
    4: ShapeError,
    5: ArgumentError,
    6: UnsupportedIsaError,
    7: MemoryError,
    8: TokenError,
    9: InternalError,
}
