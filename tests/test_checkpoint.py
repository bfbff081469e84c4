"""Torch-free checkpoint reading: values, layouts, version detection, refusals."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import (
    FormatError,
    Model,
    UnsafeCheckpointError,
    VersionError,
    open_checkpoint,
)
from rwkv_edge.checkpoint import hf_to_blink
from rwkv_edge.config import detect_config

from .reference import random_checkpoint, torch


def test_values_equal_torch_load(tiny_v2: Path) -> None:
    sd = torch.load(tiny_v2, map_location="cpu")
    with open_checkpoint(tiny_v2) as ckpt:
        assert set(ckpt) == set(sd)
        for name, t in sd.items():
            assert ckpt[name].shape == tuple(t.shape)
            assert np.array_equal(ckpt[name].to_f32(), t.numpy()), name
        assert ckpt.config.version == "5.2"


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_dtypes_and_strided_storage(tmp_path: Path, dtype: str) -> None:
    tdt = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    base = torch.randn(6, 8).to(tdt)
    # A transposed view and a slice at a storage offset share one storage.
    sd = {"t": base.t(), "s": base[2:4], "full": base}
    torch.save(sd, tmp_path / "x.pth")
    ckpt_tensors = _raw_tensors(tmp_path / "x.pth")
    for name, t in sd.items():
        assert np.array_equal(ckpt_tensors[name].to_f32(), t.float().numpy()), name


def _raw_tensors(path: Path):  # type: ignore[no-untyped-def]
    from rwkv_edge.checkpoint import _read_torch_zip

    tensors, _keep = _read_torch_zip(path)
    return tensors


def test_hostile_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"emb.weight": Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system"):
        open_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tiny_v2: Path, tmp_path: Path) -> None:
    data = tiny_v2.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 100):
        p = tmp_path / f"cut{cut}.pth"
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            open_checkpoint(p)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"hello, this is not a model" * 10)
    with pytest.raises(FormatError, match="not a checkpoint"):
        open_checkpoint(junk)


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    blobs, off = [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [off, off + len(b)],
        }
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _blink_to_hf(name: str) -> str:
    name = name.replace("emb.", "embeddings.").replace("blocks.0.ln0", "blocks.0.pre_ln")
    name = name.replace(".att.", ".attention.").replace(".ffn.", ".feed_forward.")
    for short, long in (("k", "key"), ("v", "value"), ("r", "receptance"), ("g", "gate")):
        if name.endswith(f".time_mix_{short}"):
            name = name[: -len(short)] + long
    return name if name == "head.weight" else "rwkv." + name


def test_hf_safetensors_directory_gives_same_logits(tiny_v2: Path, tmp_path: Path) -> None:
    sd = {k: v.numpy() for k, v in torch.load(tiny_v2, map_location="cpu").items()}
    hf = {_blink_to_hf(k): v for k, v in reversed(list(sd.items()))}  # key order reversed too
    assert all(hf_to_blink(k) in sd for k in hf)
    d = tmp_path / "hf"
    d.mkdir()
    _write_safetensors(d / "model.safetensors", hf)
    toks = list(b"Hello there")
    with Model.load(tiny_v2, backend="numba") as a, Model.load(d, backend="numba") as b:
        assert np.array_equal(a.forward(toks), b.forward(toks))


def _shapes(tmp_path: Path, version: str, n_layer: int) -> dict[str, tuple[int, ...]]:
    p = random_checkpoint(
        tmp_path / f"{version}.pth",
        version=version,
        n_layer=n_layer,
        n_embd=128,
        head_size=64,
        n_vocab=100,
    )
    with open_checkpoint(p) as ckpt:
        return {n: t.shape for n, t in ckpt.items()}


@pytest.mark.parametrize("version", ["5.0", "5.1", "5.2"])
def test_version_detection_ignores_key_order_and_works_on_one_layer(
    tmp_path: Path, version: str
) -> None:
    shapes = _shapes(tmp_path, version, 1)  # the reference mis-detects 1-layer v5.2
    for order in (list(shapes), sorted(shapes), sorted(shapes, reverse=True)):
        cfg = detect_config({k: shapes[k] for k in order})
        assert (cfg.version, cfg.n_layer, cfg.n_head, cfg.head_size) == (version, 1, 2, 64)
        assert cfg.n_ffn == 448 and cfg.n_vocab == 100


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    shapes = _shapes(tmp_path, "5.2", 2)
    v6 = dict(shapes, **{"blocks.0.att.time_maa_x": (1, 1, 128)})
    with pytest.raises(VersionError, match="v6"):
        detect_config(v6)
    v4 = {k: s for k, s in shapes.items() if ".ln_x." not in k}
    with pytest.raises(VersionError, match="v4"):
        detect_config(v4)
    with pytest.raises(FormatError, match="not an RWKV checkpoint"):
        detect_config({"foo.weight": (3, 3)})
