"""The GGUF layout of an rwkv-edge model file: metadata keys and tensor names.

One place defines what the quantizer writes and what both engines read.

Tensors keep BlinkDL's checkpoint names (``blocks.3.att.key.weight``) and raw
parameter values (``time_decay`` is the raw ``w`` parameter, ``time_faaaa`` the
raw bonus, ``time_first`` the log bonus of v5.0), with two changes:
``time_mix_*`` are squeezed from ``[1, 1, C]`` to ``[C]``, and nothing else is
precomputed. Matrices are ``[out, in]`` in numpy order, which GGUF stores as
``ne = [in, out]``: each output row is contiguous, as the C kernels want.

RWKV-7 files (arch ``rwkv7``, docs/RWKV7_SPEC.md) use the same keys under the
``rwkv7.`` prefix (``arch_key``), version 70, plus the four LoRA ranks; their
tensors keep BlinkDL's x070 names (``att.w1`` [C, D] as stored by BlinkDL, so
GGUF ``ne = [D, C]``), the ``[1, 1, C]`` vectors (``att.x_*``, ``w0``, ``a0``,
``v0``, ``k_k``, ``k_a``, ``ffn.x_k``) squeezed to ``[C]`` and ``att.r_k`` kept
``[H, N]``. ``emb_ln_dtype`` is always ``f32`` there: the v7 reference upcasts
before its embedding LayerNorm.
"""

from __future__ import annotations

from collections.abc import Mapping

ARCH = "rwkv5"
ARCH_V7 = "rwkv7"
ARCHS = (ARCH, ARCH_V7)

# general.* keys follow the GGUF convention.
KEY_ARCH = "general.architecture"
KEY_NAME = "general.name"
KEY_ALIGNMENT = "general.alignment"

# Hyper-parameters (all uint32 unless noted).
KEY_VERSION = f"{ARCH}.version"  # 50, 51 or 52
KEY_N_LAYER = f"{ARCH}.block_count"
KEY_N_EMBD = f"{ARCH}.embedding_length"
KEY_N_HEAD = f"{ARCH}.attention.head_count"
KEY_HEAD_SIZE = f"{ARCH}.wkv.head_size"
KEY_N_FFN = f"{ARCH}.feed_forward_length"
KEY_N_VOCAB = f"{ARCH}.vocab_size"
KEY_LN_EPS = f"{ARCH}.attention.layer_norm_epsilon"  # float32, 1e-5
KEY_GN_EPS = f"{ARCH}.group_norm_epsilon"  # float32, 64e-5 (the reference's ln_x eps)
# String "f32", "f16" or "bf16"; optional, absent means "f32" (both readers:
# gguf_file._metadata and csrc/model.c load_emb_rounding; anything else is a
# FormatError). The dtype the embedding LayerNorm output is rounded to: the
# reference computes LN(emb) in the checkpoint's dtype, so bf16 (f16)
# checkpoints see bf16- (f16-) rounded embeddings (RWKV5_SPEC.md section 5.3).
KEY_EMB_LN_DTYPE = f"{ARCH}.emb_ln_dtype"
EMB_LN_DTYPES = ("f32", "f16", "bf16")

# Tokenizer: the kind, and the tokenizer's own file embedded as bytes (uint8
# array) so that one file is the whole model.
KEY_TOKENIZER_KIND = "tokenizer.rwkv_edge.kind"  # "world" | "sentencepiece" | "bytes"
KEY_TOKENIZER_DATA = "tokenizer.rwkv_edge.data"

# Provenance and quality record written by the quantizer (strings; JSON where noted).
KEY_FILE_VERSION = "rwkv_edge.file_version"  # uint32, FILE_VERSION
KEY_RECIPE = "rwkv_edge.quant.recipe"  # JSON: default type, per-tensor overrides
KEY_REPORT = "rwkv_edge.quant.report"  # JSON: per-tensor error figures
KEY_SOURCE_SHA256 = "rwkv_edge.source.sha256"
KEY_SOURCE_NAME = "rwkv_edge.source.name"

# RWKV-7 LoRA ranks (uint32), llama.cpp's names; ModelConfig field -> key.
KEYS_V7_LORA = {
    "lora_w": f"{ARCH_V7}.decay_lora_rank",
    "lora_a": f"{ARCH_V7}.iclr_lora_rank",
    "lora_v": f"{ARCH_V7}.value_residual_mix_lora_rank",
    "lora_g": f"{ARCH_V7}.gate_lora_rank",
}
# x070 vectors stored [1, 1, C] by BlinkDL and [C] here (name suffixes).
V7_SQUEEZED = tuple(
    f".{n}" for n in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a")
)

FILE_VERSION = 1
ALIGNMENT = 64  # tensor data alignment in bytes: whole cache lines, AVX-512 loads


def block_prefix(layer: int) -> str:
    """Name prefix of one layer's tensors."""
    return f"blocks.{layer}."


def arch_key(key: str, arch: str) -> str:
    """A hyper-parameter key (written above for ``rwkv5``) under another arch's prefix."""
    return arch + key[len(ARCH) :] if key.startswith(ARCH + ".") else key


def stored_squeezed(name: str) -> bool:
    """True for the [1, 1, C] vectors a GGUF file stores as [C] (both versions)."""
    return ".time_mix_" in name or name.endswith(V7_SQUEEZED)


def is_matrix(name: str, shape: tuple[int, ...]) -> bool:
    """Whether a tensor is a matrix in the file's sense: a 2-D ``.weight`` of a projection,
    the embedding or the head, which the quantizer may quantize and the C engine multiplies
    by. Norm weights (``ln*``) and ``time_*`` parameters are never matrices, whatever
    their shape. The one rule for the quantizer's recipe and the float GGUF writer."""
    if len(shape) != 2 or not name.endswith(".weight") or ".time_" in name:
        return False
    module = name.rsplit(".", 2)[-2]  # "blocks.0.att.key.weight" -> "key"
    return not module.startswith("ln")


def emb_ln_dtype(metadata: Mapping[str, object], emb_dtype: str) -> str:
    """The dtype LN(emb) is rounded to (KEY_EMB_LN_DTYPE above), for every writer and
    engine: what a converted file's metadata (``Checkpoint.metadata``) already says, else
    the dtype the source embedding is stored in, f32 for anything but f16/bf16."""
    if "emb_ln_dtype" in metadata:
        return str(metadata["emb_ln_dtype"])
    return emb_dtype if emb_dtype in EMB_LN_DTYPES else "f32"
