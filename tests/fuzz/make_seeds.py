"""Write the seed corpora of the fuzz harnesses (run by tools/fuzz.sh).

    python tests/fuzz/make_seeds.py OUT_DIR     -> OUT_DIR/{gguf,checkpoint,tokenizer}/

Seeds are small valid files, so mutations start from inputs that pass the
magic and header checks and reach the deeper parsing code. They are built by
the same helpers the hostile-file tests use, so the two stay in step.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def gguf_seeds(out: Path) -> None:
    hostile = _load("test_hostile_gguf")
    from rwkv_edge.quantize.convert import convert
    from rwkv_edge.quantize.recipe import make_recipe

    with tempfile.TemporaryDirectory() as tmp:
        src = hostile._tiny_safetensors(Path(tmp) / "tiny.safetensors")
        for qtype in ("q8_0", "q4_0"):
            convert(src, out / f"tiny-{qtype}.gguf", make_recipe(qtype))


def checkpoint_seeds(out: Path) -> None:
    """Each seed starts with the harness's mode byte: 0 file, 1 data.pkl, 2 safetensors header."""
    hostile = _load("test_hostile_checkpoints")
    pkl = hostile._pickle(hostile._rwkv_tensors())
    pth = hostile._write_zip(out / "tmp.pth", pkl, {"0": hostile.F32_16})
    (out / "handmade.pth").write_bytes(b"\x00" + pth.read_bytes())
    pth.unlink()
    header = {"emb.weight": hostile._entry(shape=[2, 2])}
    st = hostile._safetensors(out / "tmp.st", header, hostile.F32_16)
    (out / "tiny.safetensors").write_bytes(b"\x00" + st.read_bytes())
    st.unlink()
    (out / "data.pkl").write_bytes(b"\x01" + pkl)
    (out / "header.json").write_bytes(b"\x02" + json.dumps(header).encode())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
    (out / "pickle-only.pth").write_bytes(b"\x00" + buf.getvalue())
    # every named attack of issue 18, as a whole file (mode byte 0)
    for name, build in hostile.ATTACKS.items():
        (out / f"attack-{name}").write_bytes(b"\x00" + build(out / name).read_bytes())
        (out / name).unlink()


def structured_seeds(out: Path) -> None:
    """Decision lists for the structure-aware targets: the valid model (no bytes),
    then each kind of lie on the first and on a later tensor (one byte per decision)."""
    (out / "valid").write_bytes(b"")
    for choice in range(16):
        (out / f"lie-{choice}").write_bytes(bytes([0, choice]))
        (out / f"late-lie-{choice}").write_bytes(bytes(2 * 30) + bytes([0, choice]))
    for layout in range(10):  # zip layouts (pth) / header lies (safetensors) after the tensors
        (out / f"layout-{layout}").write_bytes(bytes(2 * 40) + bytes([layout] * 8))
    # issue 18, as decisions: pth: BUILD raising a 4-element record's count, a doubled
    # tuple as dict key, a doubled list as storage key, a 40000-bit size; safetensors:
    # blocks.99999999999., a 1e999 (Infinity) offset, a 1.5 dimension
    issue18 = {"build": [0, 9, 0], "key": [2, 0], "skey": [0, 5, 4], "size": [0, 1, 0, 6]}
    if out.name == "safetensors":
        issue18 = {"layers": [0, 8, 0], "inf": [0, 3, 0, 3], "dim": [0, 2, 0, 2]}
    for name, decisions in issue18.items():
        (out / f"issue18-{name}").write_bytes(bytes(decisions))


def tokenizer_seeds(out: Path) -> None:
    samples = ["Hello, world!", "naïve café 北京 🙂", "\n\n\t  x", "def f(x):\n    return x\n"]
    for i, text in enumerate(samples):
        (out / f"text{i}").write_bytes(b"\x00" + text.encode())
    (out / "ids").write_bytes(b"\x01" + bytes(range(256)))
    vocab = b"1 'a' 1\n2 'b' 1\n3 b'\\xff' 1\n4 'hello' 5\n"
    (out / "vocab").write_bytes(b"\x02" + vocab + bytes(range(256)))


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    for kind, make in (
        ("gguf", gguf_seeds),
        ("checkpoint", checkpoint_seeds),
        ("pth", structured_seeds),
        ("safetensors", structured_seeds),
        ("tokenizer", tokenizer_seeds),
    ):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        make(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
