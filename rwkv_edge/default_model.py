"""The built-in demo model: what ``Model.load()`` and the CLI use when no model is given.

It is a small RWKV-v5.2 model (8 layers, n_embd 256, 4096-piece SentencePiece
vocabulary, about 8.4M parameters) trained for rwkv-edge on public-domain and
MIT-licensed English text (King James Bible, Jane Austen's novels, the Jargon
File, The Devil's Dictionary), shipped as Q8_0 GGUF so that a new user can talk
to a model with nothing to download. Its recipe is in tools/train/RECIPE.md.
It writes text in the style of its corpus; it is not an assistant.
"""

from __future__ import annotations

from pathlib import Path

from .errors import IoError

DEMO_MODEL_NAME = "demo-rwkv5-8.4M"
DEMO_MODEL_FILE = f"{DEMO_MODEL_NAME}-q8_0.gguf"


def default_model_path() -> Path:
    """The packaged demo GGUF; IoError (with what to do instead) if this install lacks it."""
    path = Path(__file__).with_name("data") / DEMO_MODEL_FILE
    if not path.is_file():
        raise IoError(
            f"the built-in demo model {DEMO_MODEL_FILE} is not in this installation "
            f"(looked for {path}); pass a model file with --model PATH "
            "(or Model.load(PATH)), e.g. a GGUF made by `rwkv-edge quantize`"
        )
    return path
