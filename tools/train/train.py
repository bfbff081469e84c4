"""Plain-PyTorch trainer for the built-in RWKV-v5.2 demo model.

The forward pass is the reference math of docs RWKV5_SPEC.md §3, written for a
whole sequence: token shift of the LayerNorm outputs, r/k/v/g projections,
per-channel decay w = exp(-exp(time_decay)), bonus u = time_faaaa, the WKV
recurrence in fp32 (chunked-parallel, checked against the step recurrence by
``--selftest``), GroupNorm over heads with eps 64e-5, silu gate after ln_x,
relu² FFN with sigmoid receptance, LayerNorm eps 1e-5, ln0 on the embedding.
Parameter names are BlinkDL's, so ``state_dict()`` is the .pth checkpoint.

    python tools/train/train.py --selftest                 # CPU: math checks
    python tools/train/train.py --tiny --minutes 0.3 ...   # CPU smoke run
    python tools/train/train.py --out $OUT --minutes 6.5   # GPU run
    python tools/train/train.py --merge DIR --save X.pth   # join the shards back
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-5
GN_EPS = 64e-5  # = BlinkDL's head_size_divisor 8 with eps 1e-5; the reference's value
SHARD_BYTES = 15 << 20  # the device returns files of at most 16 MiB


@dataclass
class Config:
    vocab: int = 4096
    n_layer: int = 8
    n_embd: int = 256
    head_size: int = 64
    ffn: int = 768
    ctx: int = 512
    chunk: int = 32
    dropout: float = 0.2  # 2.7M tokens for ~9M weights: many epochs, so regularise

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size


# ---------------------------------------------------------------------------
# WKV: the recurrence, step form (the definition) and chunked form (for speed)
# ---------------------------------------------------------------------------


def wkv_step(
    r: Tensor, k: Tensor, v: Tensor, logw: Tensor, u: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Spec §3 token by token. r,k,v: (B,H,T,N); logw,u: (H,N); s: (B,H,N,N) [key i, value j]."""
    w = logw.exp()[..., None]
    outs = []
    for t in range(r.shape[2]):
        a = k[:, :, t, :, None] * v[:, :, t, None, :]  # (B,H,N,N)
        outs.append(torch.einsum("bhi,bhij->bhj", r[:, :, t], u[..., None] * a + s))
        s = a + w * s
    return torch.stack(outs, 2), s


def _intra_decay(logw: Tensor, length: int) -> Tensor:
    """D[h,t,s,i] = w[h,i]^(t-1-s) for s < t else 0; exponents are <= 0 so it never overflows."""
    idx = torch.arange(length, device=logw.device)
    gap = (idx[:, None] - 1 - idx[None, :]).clamp(min=0).to(logw.dtype)
    mask = (idx[:, None] > idx[None, :])[..., None]
    return torch.where(mask, torch.exp(gap[None, :, :, None] * logw[:, None, None, :]), 0.0)


def wkv_chunked(
    r: Tensor, k: Tensor, v: Tensor, logw: Tensor, u: Tensor, s: Tensor, chunk: int
) -> tuple[Tensor, Tensor]:
    """wkv_step's result: exact pairwise sums inside a chunk, the state carried across chunks."""
    b, h, t, n = r.shape
    c = t // chunk
    rc, kc, vc = (x.reshape(b, h, c, chunk, n) for x in (r, k, v))
    idx = torch.arange(chunk, device=r.device, dtype=r.dtype)
    # Inside a chunk: out_t = sum_{s<t} (sum_i r_ti w_i^(t-1-s) k_si) v_s + (r_t . u k_t) v_t
    dec = _intra_decay(logw, chunk)[None, :, None]  # (1,H,1,L,L,N)
    att = (rc[:, :, :, :, None, :] * kc[:, :, :, None, :, :] * dec).sum(-1)
    bonus = (rc * u[None, :, None, None, :] * kc).sum(-1, keepdim=True)
    y = att @ vc + bonus * vc
    # Across chunks: token t sees the chunk-start state decayed t times; the state
    # at the end of a chunk decays by w^L and gains each k_s v_s^T decayed L-1-s times.
    r_dec = rc * torch.exp(idx[:, None] * logw[:, None, :])[None, :, None]
    k_dec = kc * torch.exp((chunk - 1 - idx)[:, None] * logw[:, None, :])[None, :, None]
    w_chunk = torch.exp(chunk * logw)[None, :, :, None]
    inter = []
    for ci in range(c):
        inter.append(r_dec[:, :, ci] @ s)
        s = w_chunk * s + k_dec[:, :, ci].transpose(-1, -2) @ vc[:, :, ci]
    y = y + torch.stack(inter, 2)
    return y.reshape(b, h, t, n), s


# ---------------------------------------------------------------------------
# The model (module and parameter names = BlinkDL checkpoint keys)
# ---------------------------------------------------------------------------


def _wide(x: Tensor) -> Tensor:
    """At least fp32 (bf16 autocast outputs go up; the fp64 self-test stays fp64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _shift(x: Tensor) -> Tensor:
    """Previous token's value (zeros before the first): the token-shift input."""
    return F.pad(x, (0, 0, 1, -1))


def _layer_ramps(cfg: Config, layer: int) -> tuple[float, float, Tensor]:
    ratio_0_to_1 = layer / max(cfg.n_layer - 1, 1)
    ratio_1_to_0 = 1.0 - layer / cfg.n_layer
    ddd = torch.arange(cfg.n_embd, dtype=torch.float32) / cfg.n_embd
    return ratio_0_to_1, ratio_1_to_0, ddd


class TimeMix(nn.Module):
    def __init__(self, cfg: Config, layer: int) -> None:
        super().__init__()
        c, h, n = cfg.n_embd, cfg.n_head, cfg.head_size
        self.cfg = cfg
        up, down, ddd = _layer_ramps(cfg, layer)
        # Decay/mix ramps: deeper layers and later channels remember longer (RWKV-5 practice).
        self.time_mix_k = nn.Parameter((ddd**down).view(1, 1, c))
        self.time_mix_v = nn.Parameter((ddd**down + 0.3 * up).view(1, 1, c))
        self.time_mix_r = nn.Parameter((ddd ** (0.5 * down)).view(1, 1, c))
        self.time_mix_g = nn.Parameter((ddd ** (0.5 * down)).view(1, 1, c))
        pos = torch.arange(c, dtype=torch.float32) / (c - 1)
        self.time_decay = nn.Parameter((-6 + 5 * pos ** (0.7 + 1.3 * up)).view(h, n))
        zigzag = (torch.arange(c) + 1) % 3 - 1
        self.time_faaaa = nn.Parameter((up * (1 - pos) + 0.1 * zigzag).view(h, n))
        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        self.gate = nn.Linear(c, c, bias=False)
        self.ln_x = nn.GroupNorm(h, c, eps=GN_EPS)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return _wide(x).view(b, t, self.cfg.n_head, self.cfg.head_size).transpose(1, 2)

    def forward(self, xx: Tensor, step: bool = False) -> Tensor:
        sx = _shift(xx)
        mix = {
            m: xx * p + sx * (1 - p)
            for m, p in (
                ("k", self.time_mix_k),
                ("v", self.time_mix_v),
                ("r", self.time_mix_r),
                ("g", self.time_mix_g),
            )
        }
        r, k, v = (
            self._heads(lin(mix[m]))
            for lin, m in ((self.receptance, "r"), (self.key, "k"), (self.value, "v"))
        )
        g = F.silu(self.gate(mix["g"]))
        logw = -torch.exp(_wide(self.time_decay))
        u = _wide(self.time_faaaa)
        b, h, t, n = r.shape
        s0 = r.new_zeros(b, h, n, n)
        if step:
            y, _ = wkv_step(r, k, v, logw, u, s0)
        else:
            y, _ = wkv_chunked(r, k, v, logw, u, s0, self.cfg.chunk)
        y = y.transpose(1, 2).reshape(b * t, h * n)
        y = self.ln_x(y).view(b, t, h * n)
        return self.output(y.to(g.dtype) * g)


class ChannelMix(nn.Module):
    def __init__(self, cfg: Config, layer: int) -> None:
        super().__init__()
        c = cfg.n_embd
        _, down, ddd = _layer_ramps(cfg, layer)
        self.time_mix_k = nn.Parameter((ddd**down).view(1, 1, c))
        self.time_mix_r = nn.Parameter((ddd**down).view(1, 1, c))
        self.key = nn.Linear(c, cfg.ffn, bias=False)
        self.receptance = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(cfg.ffn, c, bias=False)

    def forward(self, xx: Tensor) -> Tensor:
        sx = _shift(xx)
        xk = xx * self.time_mix_k + sx * (1 - self.time_mix_k)
        xr = xx * self.time_mix_r + sx * (1 - self.time_mix_r)
        return torch.sigmoid(self.receptance(xr)) * self.value(torch.relu(self.key(xk)) ** 2)


class Block(nn.Module):
    def __init__(self, cfg: Config, layer: int) -> None:
        super().__init__()
        if layer == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.att = TimeMix(cfg, layer)
        self.ffn = ChannelMix(cfg, layer)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, step: bool = False) -> Tensor:
        x = x + self.drop(self.att(self.ln1(x), step))
        return x + self.drop(self.ffn(self.ln2(x)))


class RWKV5(nn.Module):
    def __init__(self, cfg: Config, block: Callable[[Any, int], nn.Module] = Block) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab, cfg.n_embd)
        self.blocks = nn.ModuleList(block(cfg, i) for i in range(cfg.n_layer))
        self.ln_out = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab, bias=False)
        self._init_matrices()

    def _init_matrices(self) -> None:
        """Tiny embedding (ln0 normalises it); zero residual outputs: blocks start as identity."""
        c = self.cfg.n_embd
        nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
        nn.init.normal_(self.head.weight, std=0.5 / math.sqrt(c))
        for blk in self.blocks:
            normal, zero = self._block_matrices(blk)
            for lin in normal:
                nn.init.normal_(lin.weight, std=1 / math.sqrt(c))
            for lin in zero:
                nn.init.zeros_(lin.weight)

    def _block_matrices(self, blk: Any) -> tuple[list[nn.Linear], list[nn.Linear]]:
        """A block's matrices initialised N(0, 1/C), and those initialised to zero."""
        att, ffn = blk.att, blk.ffn
        return [att.receptance, att.key, att.value, att.gate, ffn.key], [
            att.output,
            ffn.value,
            ffn.receptance,
        ]

    def forward(self, idx: Tensor, step: bool = False) -> Tensor:
        """Logits (B,T,V) for token ids (B,T) from the zero state; step=True uses wkv_step."""
        x = self.blocks[0].ln0(self.emb(idx))
        for blk in self.blocks:
            x = blk(x, step)
        return self.head(self.ln_out(x))


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def checkpoint_dict(model: RWKV5, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}


def save_shards(sd: dict[str, Tensor], out: Path, stem: str) -> list[Path]:
    """Split a state dict into .pth files under SHARD_BYTES each (device file-size limit)."""
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for k, v in sd.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    paths = [out / f"{stem}.part{i}.pth" for i in range(len(shards))]
    for p, part in zip(paths, shards, strict=True):
        torch.save(part, p)
    return paths


def merge_shards(folder: Path, stem: str) -> dict[str, Tensor]:
    """Inverse of save_shards; key order (BlinkDL order) is kept."""
    sd: dict[str, Tensor] = {}
    for p in sorted(folder.glob(f"{stem}.part*.pth"), key=lambda q: int(q.stem.split("part")[1])):
        sd.update(torch.load(p, map_location="cpu"))
    return sd


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def batches(
    tokens: np.ndarray, cfg: Config, batch: int, gen: np.random.Generator, device: str
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless random windows of ctx+1 tokens (inputs and next-token targets)."""
    while True:
        starts = gen.integers(0, len(tokens) - cfg.ctx - 1, size=batch)
        win = np.stack([tokens[s : s + cfg.ctx + 1] for s in starts]).astype(np.int64)
        xy = torch.from_numpy(win).to(device, non_blocking=True)
        yield xy[:, :-1], xy[:, 1:]


@torch.no_grad()
def eval_loss(model: RWKV5, tokens: np.ndarray, ctx: int, device: str, amp: bool) -> float:
    """Mean next-token loss over non-overlapping ctx windows, each from the zero state."""
    model.eval()
    n = (len(tokens) - 1) // ctx
    x = torch.from_numpy(tokens[: n * ctx].astype(np.int64)).view(n, ctx).to(device)
    y = torch.from_numpy(tokens[1 : n * ctx + 1].astype(np.int64)).view(n, ctx).to(device)
    total = 0.0
    for i in range(0, n, 64):
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            logits = model(x[i : i + 64]).float()
        total += F.cross_entropy(
            logits.flatten(0, 1), y[i : i + 64].flatten(), reduction="sum"
        ).item()
    model.train()
    return total / (n * ctx)


def lr_at(frac: float, step: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine to peak/20 over the time budget (frac = elapsed/budget)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def make_optimizer(model: RWKV5, lr: float, wd: float) -> torch.optim.Optimizer:
    """Weight decay on the projection matrices only (not emb, norms, mixes, decays)."""
    decay = [
        p
        for n, p in model.named_parameters()
        if p.ndim == 2 and n.endswith(".weight") and not n.startswith("emb")
    ]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), eps=1e-8)


@torch.no_grad()
def greedy(model: RWKV5, prompt: list[int], n: int, device: str) -> list[int]:
    """Greedy continuation by re-running the sequence (slow but short; only for the log)."""
    model.eval()
    ids = list(prompt)
    for _ in range(n):
        chunk = model.cfg.chunk
        pad = (-len(ids)) % chunk
        x = torch.tensor([ids + [0] * pad], device=device)
        ids.append(int(model(x)[0, len(ids) - 1].argmax()))
    model.train()
    return ids[len(prompt) :]


def train(
    args: argparse.Namespace, cfg: Config, make_model: Callable[[Any], nn.Module] | None = None
) -> None:
    """Train RWKV5(cfg), or make_model(cfg) (train_v7.py's RWKV7), for args.minutes."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    amp = device == "cuda"
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    data = {s: np.load(args.data / f"{s}.npy") for s in ("train", "val", "heldout")}
    model: Any = (make_model or RWKV5)(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, args.lr, args.wd)
    gen = np.random.default_rng(args.seed)
    it = batches(data["train"], cfg, args.batch, gen, device)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.txt").open("w")

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"config {asdict(cfg)} params {n_params} device {device} train tokens {len(data['train'])}")
    budget = args.minutes * 60
    t0 = time.time()
    best: dict[str, Any] = {"val": float("inf"), "step": -1}

    def evaluate(step: int, lr: float, train_ema: float) -> None:
        """Validation loss now; keep a CPU copy of the weights when it is the best so far."""
        val = eval_loss(model, data["val"], cfg.ctx, device, amp)
        sec = time.time() - t0
        say(
            f"step {step} t {sec:.0f}s lr {lr:.2e} train~{train_ema:.4f} val {val:.4f} "
            f"tok/s {step * args.batch * cfg.ctx / sec:.0f}"
        )
        if val < best["val"]:
            best.update(val=val, step=step, train_ema=train_ema, sd=checkpoint_dict(model))

    step = 0
    train_ema = float("nan")
    while (elapsed := time.time() - t0) < budget:
        lr = lr_at(elapsed / budget, step, args.lr, args.warmup)
        for grp in opt.param_groups:
            grp["lr"] = lr
        x, y = next(it)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        lv = loss.item() if step % 10 == 0 or step < 10 else None
        if lv is not None:
            train_ema = lv if math.isnan(train_ema) else 0.9 * train_ema + 0.1 * lv
        if step % args.eval_every == 0:
            evaluate(step, lr, train_ema)
    evaluate(step, 0.0, train_ema)
    finish(args, cfg, model, best, step, time.time() - t0, data, device, say)


def finish(
    args: argparse.Namespace,
    cfg: Config,
    model: RWKV5,
    best: dict[str, Any],
    steps: int,
    seconds: float,
    data: dict[str, np.ndarray],
    device: str,
    say: Callable[[str], None],
) -> None:
    """Reload the best weights, measure final losses in fp32, write shards, meta and a sample."""
    save_shards(best["sd"], args.out, "demo")  # first, so a later failure still leaves weights
    model.load_state_dict({k: v.to(device) for k, v in best["sd"].items()})
    val32 = eval_loss(model, data["val"], cfg.ctx, device, amp=False)
    train32 = eval_loss(model, data["train"][: len(data["val"])], cfg.ctx, device, amp=False)
    n_held = min(args.heldout_tokens, len(data["heldout"]) - 1)
    held = eval_loss(model, data["heldout"][: n_held + 1], n_held, device, amp=False)
    meta = {
        "config": asdict(cfg),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "batch": args.batch,
        "tokens_seen": steps * args.batch * cfg.ctx,
        "train_tokens": len(data["train"]),
        "best_step": best["step"],
        "val_loss_bf16_at_best": best["val"],
        "val_loss_fp32": val32,
        "train_loss_fp32_sample": train32,
        "train_loss_ema_at_best": best["train_ema"],
        "heldout_tokens": n_held,
        "heldout_loss_fp32": held,
        "lr": args.lr,
        "wd": args.wd,
        "seed": args.seed,
    }
    say(json.dumps(meta))
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    sample = greedy(
        model, data["heldout"][:32].astype(np.int64).tolist(), args.sample_tokens, device
    )
    say("sample ids " + json.dumps(sample))


# ---------------------------------------------------------------------------
# Self-test and entry point
# ---------------------------------------------------------------------------


def selftest() -> None:
    """Chunked WKV == step WKV, and the chunked model == the step model, in fp64."""
    torch.manual_seed(0)
    b, h, t, n = 2, 3, 64, 8
    r, k, v = (torch.randn(b, h, t, n, dtype=torch.float64) for _ in range(3))
    logw = -torch.exp(torch.randn(h, n, dtype=torch.float64) * 2)  # includes tiny decays
    u = torch.randn(h, n, dtype=torch.float64)
    s0 = torch.randn(b, h, n, n, dtype=torch.float64)
    y1, s1 = wkv_step(r, k, v, logw, u, s0)
    y2, s2 = wkv_chunked(r, k, v, logw, u, s0, 16)
    dy, ds = (y1 - y2).abs().max(), (s1 - s2).abs().max()
    print(f"wkv chunked vs step: max|dy| {dy:.2e} max|ds| {ds:.2e}")
    assert torch.allclose(y1, y2, atol=1e-9) and torch.allclose(s1, s2, atol=1e-9)
    cfg = Config(vocab=64, n_layer=2, n_embd=32, head_size=16, ffn=64, ctx=32, chunk=8, dropout=0.0)
    model = RWKV5(cfg).double().eval()
    for p in model.parameters():  # non-trivial weights everywhere (zero-inits hide bugs)
        p.data += 0.1 * torch.randn_like(p)
    idx = torch.randint(0, 64, (2, 32))
    d = (model(idx) - model(idx, step=True)).abs().max()
    print(f"model chunked vs step: max|dlogit| {d:.2e}")
    assert d < 1e-9


def argument_parser(doc: str, out: str, minutes: float, **defaults: Any) -> argparse.ArgumentParser:
    """The options train.py and train_v7.py share; ``defaults`` overrides set_defaults."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("tools/train/data"))
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--minutes", type=float, default=minutes)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--heldout-tokens", type=int, default=2048)
    ap.add_argument("--sample-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=Config.dropout)
    ap.add_argument("--tiny", action="store_true", help="2 layers x 64: CPU smoke test")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--merge", type=Path, help="folder of demo.part*.pth shards to join")
    ap.add_argument("--save", type=Path, help="with --merge: where to write the joined .pth")
    ap.add_argument("--fp16", action="store_true", help="with --merge: save as float16")
    ap.set_defaults(**defaults)
    return ap


def merge_and_save(args: argparse.Namespace) -> None:
    """--merge DIR --save X.pth [--fp16]: join a run's shards into one checkpoint."""
    sd = merge_shards(args.merge, "demo")
    dtype = torch.float16 if args.fp16 else torch.float32
    torch.save({k: v.to(dtype) for k, v in sd.items()}, args.save)


def parse() -> tuple[argparse.Namespace, Config]:
    ap = argument_parser(__doc__ or "", "tools/train/data/run", 6.5)
    args = ap.parse_args()
    if args.tiny:
        cfg = Config(n_layer=2, n_embd=64, head_size=32, ffn=128, ctx=64, chunk=16)
    else:
        cfg = Config(dropout=args.dropout)
    return args, cfg


def main() -> None:
    args, cfg = parse()
    if args.selftest:
        selftest()
    elif args.merge:
        merge_and_save(args)
    else:
        train(args, cfg)


if __name__ == "__main__":
    main()
