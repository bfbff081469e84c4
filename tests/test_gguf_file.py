"""GGUF files: written here, read by gguf's reader and ours; bad files refused; atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import gguf_schema as S
from rwkv_edge.checkpoint import open_checkpoint
from rwkv_edge.errors import FormatError, IoError, VersionError
from rwkv_edge.gguf_file import ChunkedTensor, read_gguf, write_gguf
from rwkv_edge.quant import quantize
from rwkv_edge.tensors import f32_to_bf16

gguf = pytest.importorskip("gguf")

# one of each stored dtype, on real tensors of the fixture
DTYPE_OF = {
    "emb.weight": "q8_0",
    "head.weight": "f16",
    "blocks.0.att.key.weight": "q4_0",
    "blocks.0.ffn.value.weight": "q4_1",
    "blocks.1.att.value.weight": "bf16",
}


def _items(src: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    with open_checkpoint(src) as ck:
        for name, t in ck.items():
            x = t.to_f32()
            if ".time_mix_" in name:
                x = x.reshape(-1)
            yield name, DTYPE_OF.get(name, "f32"), x


@pytest.fixture(scope="module")
def written(tiny_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    with open_checkpoint(tiny_v2) as ck:
        config = ck.config
    write_gguf(
        dst,
        config,
        _items(tiny_v2),
        tokenizer=("world", b"1 'a' 1\n"),
        recipe={"type": "mixed"},
        report=lambda: {"n": 1},
        source_sha256="ab" * 32,
        source_name="tiny.pth",
    )
    return dst


def test_gguf_reader_sees_every_key_and_aligned_tensors(written: Path) -> None:
    r = gguf.GGUFReader(written)

    def val(key: str) -> object:
        return r.fields[key].contents()

    assert val(S.KEY_ARCH) == "rwkv5" and val(S.KEY_ALIGNMENT) == 64
    dims = (
        S.KEY_N_LAYER,
        S.KEY_N_EMBD,
        S.KEY_N_HEAD,
        S.KEY_HEAD_SIZE,
        S.KEY_N_FFN,
        S.KEY_N_VOCAB,
        S.KEY_VERSION,
    )
    assert [val(k) for k in dims] == [12, 64, 8, 8, 256, 256, 52]
    assert abs(val(S.KEY_GN_EPS) - 64e-5) < 1e-9 and abs(val(S.KEY_LN_EPS) - 1e-5) < 1e-12
    assert val(S.KEY_TOKENIZER_KIND) == "world"
    assert bytes(val(S.KEY_TOKENIZER_DATA)) == b"1 'a' 1\n"
    assert val(S.KEY_SOURCE_SHA256) == "ab" * 32 and val(S.KEY_FILE_VERSION) == S.FILE_VERSION
    assert '"type": "mixed"' in val(S.KEY_RECIPE)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["emb.weight"] == "Q8_0" and types["blocks.0.att.key.weight"] == "Q4_0"
    assert types["blocks.0.ffn.value.weight"] == "Q4_1" and types["head.weight"] == "F16"
    assert types["blocks.1.att.value.weight"] == "BF16"
    assert len(r.tensors) == 270
    assert all(t.data_offset % 64 == 0 for t in r.tensors)
    key = next(t for t in r.tensors if t.name == "blocks.0.att.key.weight")
    assert list(key.shape) == [64, 64]  # ne order: [in, out]


def test_read_back_equals_what_was_written(written: Path, tiny_v2: Path) -> None:
    ck = read_gguf(written)
    with ck:
        assert ck.kind == "gguf" and ck.config.version == "5.2" and ck.config.n_layer == 12
        assert ck.config.ln_eps == 1e-5 and ck.config.gn_eps == 64e-5
        assert ck.metadata["recipe"] == {"type": "mixed"} and ck.metadata["report"] == {"n": 1}
        assert ck.metadata["tokenizer_kind"] == "world"
        for name, dtype, x in _items(tiny_v2):
            t = ck[name]
            assert t.dtype == dtype and t.shape == x.shape, name
            if dtype in ("q8_0", "q4_0", "q4_1"):
                assert np.array_equal(np.asarray(t.raw), quantize(x, dtype)), name
            elif dtype == "bf16":
                assert np.array_equal(np.asarray(t.raw), f32_to_bf16(x))
            else:
                want = x.astype(np.float16 if dtype == "f16" else np.float32)
                assert np.array_equal(t.to_f32(), want), name
        assert ck["blocks.0.att.time_mix_k"].shape == (64,)


def test_chunked_tensor_equals_whole(tmp_path: Path, tiny_v2: Path) -> None:
    items = list(_items(tiny_v2))
    x = dict((n, a) for n, _, a in items)["emb.weight"]

    def chunked() -> Iterator[tuple[str, str, object]]:
        for n, d, a in items:
            if n == "emb.weight":
                parts = (quantize(a[i : i + 7], d) for i in range(0, 256, 7))
                yield n, d, ChunkedTensor(a.shape, parts)
            else:
                yield n, d, a

    with open_checkpoint(tiny_v2) as ck:
        write_gguf(tmp_path / "c.gguf", ck.config, chunked())
    with read_gguf(tmp_path / "c.gguf") as back:
        assert np.array_equal(np.asarray(back["emb.weight"].raw), quantize(x, "q8_0"))
        assert back.metadata["tokenizer_kind"] == "bytes"


def _patched(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    data = src.read_bytes()
    assert old in data and len(old) == len(new)
    dst.write_bytes(data.replace(old, new, 1))
    return dst


def test_bad_files_are_refused_with_clear_errors(written: Path, tmp_path: Path) -> None:
    with pytest.raises(VersionError, match="architecture is 'rwkv6'"):
        read_gguf(_patched(written, tmp_path / "a.gguf", b"rwkv5", b"rwkv6"))
    with pytest.raises(FormatError, match="architecture is 'llama'"):
        read_gguf(
            _patched(
                written,
                tmp_path / "b.gguf",
                b"\x05\x00\x00\x00\x00\x00\x00\x00rwkv5",
                b"\x05\x00\x00\x00\x00\x00\x00\x00llama",
            )
        )
    with pytest.raises(FormatError, match=r"'rwkv5\.attention\.head_count' is missing"):
        read_gguf(
            _patched(written, tmp_path / "c.gguf", b"attention.head_count", b"attention.head_cnt__")
        )
    with pytest.raises(FormatError, match="not a GGUF"):
        read_gguf(_patched(written, tmp_path / "d.gguf", b"GGUF", b"GGUG"))
    with pytest.raises(VersionError, match="GGUF version 7"):
        read_gguf(_patched(written, tmp_path / "e.gguf", b"GGUF\x03\x00", b"GGUF\x07\x00"))
    data = written.read_bytes()
    for cut in (10, 200, len(data) // 3, len(data) - 100):
        (tmp_path / "t.gguf").write_bytes(data[:cut])
        with pytest.raises(FormatError, match=r"truncated|not a GGUF"):
            read_gguf(tmp_path / "t.gguf")


def test_newer_file_version_is_a_version_error(
    tiny_v2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_checkpoint(tiny_v2) as ck:
        config = ck.config
    monkeypatch.setattr(S, "FILE_VERSION", S.FILE_VERSION + 1)
    write_gguf(tmp_path / "new.gguf", config, _items(tiny_v2))
    monkeypatch.undo()
    with pytest.raises(VersionError, match="file version 2 is newer"):
        read_gguf(tmp_path / "new.gguf")


def _leftovers(d: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name not in keep)


def test_existing_dst_is_refused_without_force(
    written: Path, tmp_path: Path, tiny_v2: Path
) -> None:
    dst = tmp_path / "m.gguf"
    dst.write_bytes(b"precious")
    with open_checkpoint(tiny_v2) as ck:
        with pytest.raises(IoError, match="exists"):
            write_gguf(dst, ck.config, _items(tiny_v2))
        assert dst.read_bytes() == b"precious"
        write_gguf(dst, ck.config, _items(tiny_v2), force=True)
    assert read_gguf(dst).config.n_layer == 12
    assert _leftovers(tmp_path, {"m.gguf"}) == []


def test_failure_mid_write_leaves_dst_untouched(tmp_path: Path, tiny_v2: Path) -> None:
    dst = tmp_path / "m.gguf"
    dst.write_bytes(b"precious")

    def failing() -> Iterator[tuple[str, str, np.ndarray]]:
        for i, item in enumerate(_items(tiny_v2)):
            if i == 100:
                raise RuntimeError("injected fault")
            yield item

    with open_checkpoint(tiny_v2) as ck:
        for target in (dst, tmp_path / "new.gguf"):
            with pytest.raises(RuntimeError, match="injected"):
                write_gguf(target, ck.config, failing(), force=True)
    assert dst.read_bytes() == b"precious"
    assert _leftovers(tmp_path, {"m.gguf"}) == []


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from rwkv_edge.checkpoint import open_checkpoint
    from rwkv_edge.gguf_file import write_gguf
    src, dst = sys.argv[1], sys.argv[2]
    ck = open_checkpoint(src)
    def items():
        for i, (name, t) in enumerate(ck.items()):
            if i == 150:  # mid-stream, data file half written: say which files are open there
                fds = []
                for n in os.listdir("/proc/self/fd"):
                    try:
                        fds.append(os.readlink(f"/proc/self/fd/{n}"))
                    except OSError:  # the descriptor listdir itself used
                        pass
                print(sum(os.path.dirname(dst) in t for t in fds), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            x = t.to_f32()
            yield name, "f32", x.reshape(-1) if ".time_mix_" in name else x
    write_gguf(dst, ck.config, items(), force=True)
""")


def test_sigkill_mid_write_leaves_dst_untouched_and_nothing_else(
    tmp_path: Path, tiny_v2: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "m.gguf"
    for existing in (None, b"precious"):
        if existing is not None:
            dst.write_bytes(existing)
        proc = subprocess.run(
            [sys.executable, "-c", _KILL_SCRIPT, str(tiny_v2), str(dst)],
            env={**os.environ},
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        if existing is None:
            assert not dst.exists()
        else:
            assert dst.read_bytes() == existing
        # the kill came with the output files open in dst's directory...
        assert int(proc.stdout.split()[-1]) >= 2, proc.stdout
        leftovers = _leftovers(out, {"m.gguf"})
        if hasattr(os, "O_TMPFILE"):  # ...which were unnamed: nothing is left
            assert leftovers == [], leftovers
        for name in leftovers:  # elsewhere: clearly temporary, hidden, named after dst
            assert name.startswith(".m.gguf.") and name.endswith(".tmp"), name
