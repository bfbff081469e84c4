"""atheris harnesses for the Python readers of untrusted bytes.

    python tests/fuzz/fuzz_python.py TARGET [libFuzzer options] [corpus dirs]
    TARGET: checkpoint | pth | safetensors | gguf | tokenizer

``pth`` and ``safetensors`` are structure-aware (tests/fuzz/structured.py): the
input is a list of decisions that build a whole model file with lies in its
pickle opcodes, zip layout or header; a file that opens is then checked
complete, every tensor read in full, and the numba engine's weights built.

The contract under test: for any input the code returns or raises an
``RwkvEdgeError``; any other exception (or a crash, hang, or memory blow-up
caught by libFuzzer's -timeout / -rss_limit_mb) is a finding. Known bugs that
have a strict-xfail test are tolerated here (KNOWN_BUGS) so a short CI run keeps
looking for new ones; RWE_FUZZ_STRICT=1 turns them back into findings.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

if sys.argv[1:2] == ["tokenizer"]:
    # The byte trie is numba code, which cannot compile instrumented bytecode:
    # import it first (so uninstrumented), then instrument the tokenizer only.
    import rwkv_edge._trie  # noqa: F401

    with atheris.instrument_imports(include=["rwkv_edge.tokenizer"]):
        from rwkv_edge.tokenizer import ByteTokenizer, WorldTokenizer
else:
    # the first rwkv_edge import must happen in here, or the package's
    # __init__ imports the readers uninstrumented
    with atheris.instrument_imports(include=["rwkv_edge"]):
        from rwkv_edge.checkpoint import open_checkpoint
        from rwkv_edge.gguf_file import read_gguf
    # numba code cannot run instrumented bytecode: the engine's loader comes after
    from rwkv_edge.reference.engine import load_weights

import contextlib

from rwkv_edge.errors import RwkvEdgeError, TokenError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from structured import checkpoint_file, pth_file, safetensors_file

# tmpfs when there is one: rewriting one file per input on ext4 flushes each time
_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_FILE = _DIR / f"rwe-fuzz-{os.getpid()}"

# (exception type, text in its message) -> the test that records the bug.
# Empty: the last one (config.detect_config on no blocks.N. layers) is fixed.
KNOWN_BUGS: list[tuple[type[BaseException], str]] = []


def _known(e: BaseException) -> bool:
    if os.environ.get("RWE_FUZZ_STRICT") == "1":
        return False
    return any(isinstance(e, t) and s in str(e) for t, s in KNOWN_BUGS)


def _write(data: bytes) -> Path:
    _FILE.write_bytes(data)
    return _FILE


def check_checkpoint(data: bytes) -> None:
    """Mode byte: 0 whole file, 1 data.pkl in a valid zip, 2 safetensors header."""
    if not data:
        return
    with contextlib.suppress(RwkvEdgeError):
        open_checkpoint(_write(checkpoint_file(data))).close()


def _load_fully(path: Path) -> None:
    """What an engine does with a file: open, check, read every byte, build the weights."""
    with contextlib.suppress(RwkvEdgeError), open_checkpoint(path) as ckpt:
        for t in ckpt.values():
            t.to_f32()
        ckpt.check_complete()
        load_weights(ckpt)


def check_pth(data: bytes) -> None:
    _load_fully(_write(pth_file(data)))


def check_safetensors(data: bytes) -> None:
    _load_fully(_write(safetensors_file(data)))


def check_gguf(data: bytes) -> None:
    with contextlib.suppress(RwkvEdgeError):
        read_gguf(_write(data)).close()


_WORLD: WorldTokenizer | None = None


def check_tokenizer(data: bytes) -> None:
    """Mode byte: 0 text round trip, 1 decode of arbitrary ids, 2 a hostile vocab file."""
    global _WORLD
    if _WORLD is None:
        _WORLD = WorldTokenizer()
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        for tok in (_WORLD, ByteTokenizer()):
            assert tok.decode_bytes(tok.encode_bytes(body)) == body
    elif mode == 1:
        ids = [int.from_bytes(body[i : i + 3], "little") for i in range(0, len(body), 3)]
        try:
            dec = _WORLD.stream_decoder()
            dec.feed(ids)
            dec.flush()
        except TokenError:
            pass
    else:
        with contextlib.suppress(RwkvEdgeError):
            WorldTokenizer(body).encode_bytes(b"hello world")


TARGETS = {
    "checkpoint": check_checkpoint,
    "pth": check_pth,
    "safetensors": check_safetensors,
    "gguf": check_gguf,
    "tokenizer": check_tokenizer,
}


def main() -> None:
    target = TARGETS[sys.argv.pop(1)]

    def one_input(data: bytes) -> None:
        try:
            target(data)
        except Exception as e:
            if not _known(e):
                raise

    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        _FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
