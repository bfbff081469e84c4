"""The Checkpoint container every reader returns (checkpoint.py's .pth, safetensors and
HF readers, gguf_file.py's GGUF reader): tensors by BlinkDL name, the detected config,
and what keeps the mapping alive. A module of its own so that the readers depend on it
and not on each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .config import ModelConfig, check_tensors, detect_config
from .errors import FormatError, VersionError
from .tensors import Tensor


class Checkpoint(Mapping[str, Tensor]):
    """Named tensors of one model (BlinkDL names) plus what the file says of itself."""

    def __init__(
        self,
        path: Path,
        tensors: dict[str, Tensor],
        kind: str,
        metadata: dict[str, Any] | None = None,
        keepalive: list[Any] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind  # "pth" | "safetensors" | "hf" | "gguf"
        self.metadata = metadata or {}
        self._tensors = tensors
        self._keepalive = keepalive or []  # mmaps and open files backing the arrays
        try:
            self.config: ModelConfig = self._detect()
            # The one check of every tensor's rank, shape and dtype: engines, the
            # quantizer and `info` only ever see tensors that fit the config.
            check_tensors(self.config, self._signature(), path.name)
        except BaseException:
            self.close()  # now, not at garbage collection
            raise

    def _detect(self) -> ModelConfig:
        try:
            return self._config_from_metadata() or detect_config(
                {n: t.shape for n, t in self._tensors.items()}
            )
        except (FormatError, VersionError) as e:
            if str(e).startswith(f"{self.path.name}:"):
                raise
            raise type(e)(f"{self.path.name}: {e}") from None

    def _signature(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {n: (t.shape, t.dtype) for n, t in self._tensors.items()}

    def check_complete(self) -> None:
        """Raise FormatError naming the first missing tensors, if the model lacks any."""
        check_tensors(self.config, self._signature(), self.path.name, complete=True)

    def _config_from_metadata(self) -> ModelConfig | None:
        cfg = self.metadata.get("config")
        return cfg if isinstance(cfg, ModelConfig) else None

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise FormatError(f"{self.path.name}: no tensor '{name}'") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def source_dtype(self) -> str:
        """The float dtype most weights are stored in (decides the bf16 emb quirk)."""
        return self._tensors["emb.weight"].dtype

    def close(self) -> None:
        """Drop the tensors and unmap the file (arrays taken from it must not be used after)."""
        self._tensors = {}
        for obj in self._keepalive:
            # A numpy view may still reference the map; then it closes when freed.
            with contextlib.suppress(BufferError, OSError):
                obj.close()
        self._keepalive = []

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
