"""State files: exact round trip, model binding, corruption and truncation, atomic writes."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rwkv_edge.errors import ArgumentError, FormatError, IoError, VersionError
from rwkv_edge.state_io import MAGIC, load_state, load_state_and_meta, save_state


@pytest.fixture(scope="module")
def tiny(tiny_v2: Path) -> Any:
    from rwkv_edge import Model

    with Model.load(tiny_v2, backend="numba") as m:
        yield m


@pytest.fixture()
def warm_state(tiny: Any) -> Any:
    state = tiny.new_state()
    tiny.forward(list(b"The old lighthouse keeper"), state)
    return state


def test_round_trip_is_exact_and_continues_identically(
    tiny: Any, warm_state: Any, tmp_path: Path
) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny, meta={"turns": ["héllo", "你好"]})
    loaded, meta = load_state_and_meta(p, tiny)
    assert loaded == warm_state and loaded.model_id == tiny.model_id
    assert meta == {"turns": ["héllo", "你好"]}
    a = tiny.forward(list(b" climbed"), loaded)
    b = tiny.forward(list(b" climbed"), warm_state)
    np.testing.assert_array_equal(a, b)


def test_model_methods_round_trip(tiny: Any, warm_state: Any, tmp_path: Path) -> None:
    p = tiny.save_state(warm_state, tmp_path / "m.rwst")
    loaded = tiny.load_state(p)
    assert loaded == warm_state and loaded is not warm_state
    with pytest.raises(IoError):
        tiny.save_state(warm_state, p)  # never overwrites unless asked
    tiny.forward(list(b" climbed"), warm_state)
    tiny.save_state(warm_state, p, overwrite=True)
    assert tiny.load_state(p) == warm_state


def test_file_layout(tiny: Any, warm_state: Any, tmp_path: Path) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    raw = p.read_bytes()
    magic, version, hlen = struct.unpack_from("<8sII", raw)
    n = 12 * (2 * 64 + 8 * 8 * 8)  # tiny: 12 layers, C=64, 8 heads of 8
    assert (magic, version) == (MAGIC, 1) and warm_state.data.size == n == 7680
    assert len(raw) == 16 + hlen + 4 * n + 32
    data = np.frombuffer(raw, "<f4", count=n, offset=16 + hlen)
    np.testing.assert_array_equal(data, warm_state.data)


def test_refuses_a_state_of_another_model(tiny: Any, warm_state: Any, tmp_path: Path) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    other = SimpleNamespace(
        model_id="0123456789abcdef" * 2, config=tiny.config, path=Path("other.gguf")
    )
    with pytest.raises(FormatError) as e:
        load_state(p, other)
    assert tiny.model_id in str(e.value) and other.model_id in str(e.value)
    with pytest.raises(ArgumentError, match="belongs to model"):
        save_state(warm_state, tmp_path / "t.rwst", other)


def test_refuses_to_overwrite_unless_asked(tiny: Any, warm_state: Any, tmp_path: Path) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    before = p.read_bytes()
    tiny.forward([65], warm_state)
    with pytest.raises(IoError, match="already exists"):
        save_state(warm_state, p, tiny)
    assert p.read_bytes() == before
    save_state(warm_state, p, tiny, overwrite=True)
    assert load_state(p, tiny) == warm_state
    assert sorted(os.listdir(tmp_path)) == ["s.rwst"]  # no temp files left behind


def test_failed_write_leaves_nothing(
    tiny: Any, warm_state: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(IoError, match="No space left"):
        save_state(warm_state, tmp_path / "s.rwst", tiny)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("cut", [0, 5, 16, 100, -33, -1])
def test_truncated_files_are_refused(tiny: Any, warm_state: Any, tmp_path: Path, cut: int) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    raw = p.read_bytes()
    p.write_bytes(raw[:cut])
    with pytest.raises(FormatError):
        load_state(p, tiny)


@pytest.mark.parametrize("where", ["header", "data", "digest"])
def test_corrupt_files_are_refused(tiny: Any, warm_state: Any, tmp_path: Path, where: str) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    raw = bytearray(p.read_bytes())
    hlen = struct.unpack_from("<I", raw, 12)[0]
    pos = {"header": 16 + hlen // 2, "data": 16 + hlen + 1000, "digest": len(raw) - 3}[where]
    raw[pos] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"corrupt|checksum"):
        load_state(p, tiny)


def test_bad_magic_and_future_version(tiny: Any, warm_state: Any, tmp_path: Path) -> None:
    p = save_state(warm_state, tmp_path / "s.rwst", tiny)
    raw = bytearray(p.read_bytes())
    p.write_bytes(b"GGUF" + bytes(raw[4:]))
    with pytest.raises(FormatError, match="magic"):
        load_state(p, tiny)
    raw[8:12] = struct.pack("<I", 2)
    p.write_bytes(bytes(raw))
    with pytest.raises(VersionError, match="version 2"):
        load_state(p, tiny)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "dir"])
def test_special_files_are_refused_not_read(kind: str, tiny: Any, tmp_path: Path) -> None:
    """/dev/zero would be read until MemoryError, a FIFO waited on forever (issue 18)."""
    if kind == "dev_zero":
        p = Path("/dev/zero")
    elif kind == "fifo":
        p = tmp_path / "s.state"
        os.mkfifo(p)
    else:
        p = tmp_path
    with pytest.raises(FormatError, match="not a regular file"):
        load_state(p, tiny)


def test_header_cannot_make_the_reader_read_more_than_the_file(
    tiny: Any, warm_state: Any, tmp_path: Path
) -> None:
    p = save_state(warm_state, tmp_path / "s.state", tiny)
    raw = bytearray(p.read_bytes())
    raw[8:12] = struct.pack("<I", 2)  # also refuses other versions before reading on
    (tmp_path / "v.state").write_bytes(bytes(raw))
    with pytest.raises(VersionError):
        load_state(tmp_path / "v.state", tiny)
    big = p.read_bytes().replace(b'"state_len": ', b'"state_len": 9999999', 1)
    (tmp_path / "b.state").write_bytes(big)
    with pytest.raises(FormatError):
        load_state(tmp_path / "b.state", tiny)


def test_model_load_refuses_a_fifo(tmp_path: Path) -> None:
    from rwkv_edge import Model

    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    for backend in ("numba", "auto"):
        with pytest.raises(FormatError, match="not a regular file"):
            Model.load(fifo, backend=backend)


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "temp_rename"])
def test_atomic_output_both_ways(unnamed: bool, tmp_path: Path, monkeypatch: Any) -> None:
    """Both paths of rwkv_edge.atomic_file: complete files appear, failed ones leave nothing,
    an existing file survives a failed write and is refused without overwrite."""
    from rwkv_edge import atomic_file

    if not unnamed:
        monkeypatch.setattr(atomic_file, "_open_unnamed", lambda _d: None)
    elif atomic_file._open_unnamed(tmp_path) is None:
        pytest.skip("no O_TMPFILE here")
    dst = tmp_path / "f.bin"
    with atomic_file.atomic_output(dst, overwrite=False) as out:
        out.file.write(b"one")
        assert not dst.exists()  # nothing under the name until complete
    assert dst.read_bytes() == b"one"
    with pytest.raises(IoError, match="exists"), atomic_file.atomic_output(dst, overwrite=False):
        pass
    with (
        pytest.raises(KeyboardInterrupt),
        atomic_file.atomic_output(dst, overwrite=True) as out,
    ):
        out.file.write(b"half")
        raise KeyboardInterrupt
    assert dst.read_bytes() == b"one"
    with (
        atomic_file.atomic_output(dst, overwrite=True) as out,
        open(out.path, "r+b") as again,  # the path reopens the same file
    ):
        again.write(b"two")
    assert dst.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
