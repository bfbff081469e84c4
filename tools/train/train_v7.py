"""Plain-PyTorch trainer for an RWKV-7 (x070) demo model, BlinkDL key names.

The forward pass is docs/RWKV7_SPEC.md §3 written for a whole sequence (six
token-shift mixes, decay w = exp(-0.606531 * sigmoid(w0 + tanh(xw w1) w2)) in
fp32, in-context rate a, value residual from layer 0, gate g, GroupNorm eps
64e-5, the r*k*r_k bonus, relu² FFN without receptance). Parameter names and
shapes are BlinkDL's, so ``state_dict()`` is a .pth the reference loads (layer 0
has no v0/v1/v2, as in BlinkDL's files). The batching, evaluation, optimizer,
schedule and checkpoint shards are train.py's.

WKV7 in chunks (exact): with G_t = diag(w_t) + alpha_t beta_t^T (alpha = -kk,
beta = kk*a), S_t = S_{t-1} G_t + v_t k_t^T. Inside a chunk, with gamma_t the
cumulative decay, S_t = S_0 Gamma_t + sum_{s<=t} [x_s (beta_s gamma_t/gamma_s)^T
+ v_s (k_s gamma_t/gamma_s)^T], where x_t = S_{t-1} alpha_t solves a unit
lower-triangular system per chunk. w >= exp(-0.606531) keeps 1/gamma below
1.7e4 for chunks of 16, so fp32 is safe. ``--selftest`` checks it against the
step recurrence.

    python tools/train/train_v7.py --selftest
    python tools/train/train_v7.py --tiny --minutes 0.3 --data D --out O   # CPU smoke run
    python3 tools/train/train_v7.py --data D --out $OUT --minutes 5        # GPU run
    python tools/train/train_v7.py --merge DIR --save X.pth [--fp16]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import train as v5  # tools/train/train.py: the shared training machinery
from torch import Tensor, nn

DECAY_SCALE = 0.606531  # the reference's literal (docs/RWKV7_SPEC.md §3)


@dataclass
class Config7(v5.Config):
    chunk: int = 16
    lora_w: int = 32
    lora_a: int = 32
    lora_v: int = 32
    lora_g: int = 64


# ---------------------------------------------------------------------------
# WKV7: step form (the definition) and chunked form (for speed)
# ---------------------------------------------------------------------------


def wkv7_step(
    r: Tensor, logw: Tensor, k: Tensor, v: Tensor, alpha: Tensor, beta: Tensor, s: Tensor
) -> tuple[Tensor, Tensor]:
    """Spec §3 token by token. All (B,H,T,N); s (B,H,N,N) [value i, key j]."""
    outs = []
    for t in range(r.shape[2]):
        sa = s @ alpha[:, :, t, :, None]  # (B,H,N,1)
        s = (
            s * logw[:, :, t, None, :].exp()
            + sa * beta[:, :, t, None, :]
            + v[:, :, t, :, None] * k[:, :, t, None, :]
        )
        outs.append((s @ r[:, :, t, :, None])[..., 0])
    return torch.stack(outs, 2), s


def wkv7_chunked(
    r: Tensor,
    logw: Tensor,
    k: Tensor,
    v: Tensor,
    alpha: Tensor,
    beta: Tensor,
    s: Tensor,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """wkv7_step's result (module docstring); T is padded to whole chunks with no-ops."""
    b, h, t, n = r.shape
    pad = -t % chunk
    if pad:  # w = 1 and zero k, v, alpha, beta leave the state as it is
        padded = (F.pad(x, (0, 0, 0, pad)) for x in (r, logw, k, v, alpha, beta))
        r, logw, k, v, alpha, beta = padded
    c = (t + pad) // chunk
    r, logw, k, v, alpha, beta = (
        x.reshape(b, h, c, chunk, n) for x in (r, logw, k, v, alpha, beta)
    )
    cl = logw.cumsum(3)  # log gamma_t, inclusive
    a_t = alpha * (cl - logw).exp()  # gamma_{t-1} * alpha_t
    b_hat, k_hat = beta * (-cl).exp(), k * (-cl).exp()
    r_til = r * cl.exp()
    ones = torch.ones(chunk, chunk, dtype=r.dtype, device=r.device)
    strict, incl = ones.tril(-1), ones.tril()
    eye = torch.eye(chunk, dtype=r.dtype, device=r.device)
    lower = eye - (a_t @ b_hat.transpose(-1, -2)) * strict
    w1 = torch.linalg.solve_triangular(lower, a_t, upper=False, unitriangular=True)
    x0 = torch.linalg.solve_triangular(
        lower, ((a_t @ k_hat.transpose(-1, -2)) * strict) @ v, upper=False, unitriangular=True
    )
    a_rb = (r_til @ b_hat.transpose(-1, -2)) * incl
    y_intra = ((r_til @ k_hat.transpose(-1, -2)) * incl) @ v + a_rb @ x0
    g_end = cl[:, :, :, -1:, :].exp()  # gamma_L, (B,H,C,1,N)
    b_end, k_end = b_hat * g_end, k_hat * g_end
    ys = []
    for ci in range(c):
        st = s.transpose(-1, -2)
        x = w1[:, :, ci] @ st + x0[:, :, ci]
        ys.append(r_til[:, :, ci] @ st + a_rb[:, :, ci] @ (x - x0[:, :, ci]))
        s = (
            s * g_end[:, :, ci]
            + x.transpose(-1, -2) @ b_end[:, :, ci]
            + v[:, :, ci].transpose(-1, -2) @ k_end[:, :, ci]
        )
    y = torch.stack(ys, 2) + y_intra
    return y.reshape(b, h, c * chunk, n)[:, :, :t], s


# ---------------------------------------------------------------------------
# The model (module and parameter names = BlinkDL x070 checkpoint keys)
# ---------------------------------------------------------------------------


def _ortho(rows: int, cols: int, gain: float) -> Tensor:
    return nn.init.orthogonal_(torch.empty(rows, cols), gain=gain)


class TimeMix7(nn.Module):
    def __init__(self, cfg: Config7, layer: int) -> None:
        super().__init__()
        c, h, n = cfg.n_embd, cfg.n_head, cfg.head_size
        self.cfg, self.layer = cfg, layer
        up, down, ddd = v5._layer_ramps(cfg, layer)

        def ramp(power: float) -> nn.Parameter:
            return nn.Parameter((1.0 - ddd**power).view(1, 1, c))

        self.x_r, self.x_w, self.x_k = ramp(0.2 * down), ramp(0.9 * down), ramp(0.7 * down)
        self.x_v, self.x_a, self.x_g = ramp(0.7 * down), ramp(0.9 * down), ramp(0.2 * down)
        pos = torch.arange(c, dtype=torch.float32) / (c - 1)
        # Slow decays in later channels and deeper layers (sigmoid(w0) small = w near 1).
        self.w0 = nn.Parameter((-6.5 + 5 * pos ** (0.85 + up**0.5)).view(1, 1, c))
        self.w1 = nn.Parameter(torch.zeros(c, cfg.lora_w))
        self.w2 = nn.Parameter(_ortho(cfg.lora_w, c, 0.1))
        self.a0 = nn.Parameter(torch.zeros(1, 1, c))
        self.a1 = nn.Parameter(torch.zeros(c, cfg.lora_a))
        self.a2 = nn.Parameter(_ortho(cfg.lora_a, c, 0.1))
        if layer > 0:  # layer 0 keeps v_first = v (BlinkDL files have no layer-0 v*)
            self.v0 = nn.Parameter(torch.ones(1, 1, c))
            self.v1 = nn.Parameter(torch.zeros(c, cfg.lora_v))
            self.v2 = nn.Parameter(_ortho(cfg.lora_v, c, 0.1))
        self.g1 = nn.Parameter(torch.zeros(c, cfg.lora_g))
        self.g2 = nn.Parameter(_ortho(cfg.lora_g, c, 0.1))
        self.k_k = nn.Parameter(torch.full((1, 1, c), 0.85))
        self.k_a = nn.Parameter(torch.ones(1, 1, c))
        self.r_k = nn.Parameter(torch.zeros(h, n))
        self.receptance = nn.Linear(c, c, bias=False)
        self.key = nn.Linear(c, c, bias=False)
        self.value = nn.Linear(c, c, bias=False)
        self.output = nn.Linear(c, c, bias=False)
        self.ln_x = nn.GroupNorm(h, c, eps=v5.GN_EPS)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return v5._wide(x).view(b, t, self.cfg.n_head, self.cfg.head_size).transpose(1, 2)

    def forward(self, xx: Tensor, v_first: Tensor | None, step: bool) -> tuple[Tensor, Tensor]:
        b, t, c = xx.shape
        h, n = self.cfg.n_head, self.cfg.head_size
        d = v5._shift(xx) - xx
        xr, xw, xk = xx + d * self.x_r, xx + d * self.x_w, xx + d * self.x_k
        xv, xa, xg = xx + d * self.x_v, xx + d * self.x_a, xx + d * self.x_g
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        w = torch.tanh(xw @ self.w1) @ self.w2
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize(v5._wide(k * self.k_k).view(b, t, h, n), dim=-1, p=2.0).view(b, t, c)
        k = k * (1 + (a - 1) * self.k_a)
        if self.layer == 0:
            v_first = v
        else:
            assert v_first is not None
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        logw = -DECAY_SCALE * torch.sigmoid(v5._wide(self.w0 + w))
        with torch.autocast(xx.device.type, enabled=False):
            args = [self._heads(z) for z in (r, logw, k, v, -kk, kk * a)]
            s0 = args[0].new_zeros(b, h, n, n)
            if step:
                y, _ = wkv7_step(*args, s0)
            else:
                y, _ = wkv7_chunked(*args, s0, self.cfg.chunk)
            y = self.ln_x(y.transpose(1, 2).reshape(b * t, c)).view(b, t, h, n)
            rk = (v5._wide(r * k).view(b, t, h, n) * self.r_k).sum(-1, keepdim=True)
            y = (y + rk * v5._wide(v).view(b, t, h, n)).view(b, t, c)
        return self.output(y.to(g.dtype) * g), v_first


class ChannelMix7(nn.Module):
    def __init__(self, cfg: Config7, layer: int) -> None:
        super().__init__()
        c = cfg.n_embd
        _, down, ddd = v5._layer_ramps(cfg, layer)
        self.x_k = nn.Parameter((1.0 - ddd ** (down**4)).view(1, 1, c))
        self.key = nn.Linear(c, cfg.ffn, bias=False)
        self.value = nn.Linear(cfg.ffn, c, bias=False)

    def forward(self, xx: Tensor) -> Tensor:
        k = xx + (v5._shift(xx) - xx) * self.x_k
        return self.value(torch.relu(self.key(k)) ** 2)


class Block7(nn.Module):
    def __init__(self, cfg: Config7, layer: int) -> None:
        super().__init__()
        if layer == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd, eps=v5.LN_EPS)
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=v5.LN_EPS)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=v5.LN_EPS)
        self.att = TimeMix7(cfg, layer)
        self.ffn = ChannelMix7(cfg, layer)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, v_first: Tensor | None, step: bool) -> tuple[Tensor, Tensor]:
        dx, v_first = self.att(self.ln1(x), v_first, step)
        x = x + self.drop(dx)
        return x + self.drop(self.ffn(self.ln2(x))), v_first


class RWKV7(v5.RWKV5):
    """train.py's model with x070 blocks (same embedding, head and initialisation scheme)."""

    def __init__(self, cfg: Config7) -> None:
        super().__init__(cfg, Block7)

    def _block_matrices(self, blk: Any) -> tuple[list[nn.Linear], list[nn.Linear]]:
        att = blk.att
        return [att.receptance, att.key, att.value, blk.ffn.key], [att.output, blk.ffn.value]

    def forward(self, idx: Tensor, step: bool = False) -> Tensor:
        """Logits (B,T,V) for token ids (B,T) from the zero state; step=True uses wkv7_step."""
        x = self.blocks[0].ln0(self.emb(idx))
        v_first: Tensor | None = None
        for blk in self.blocks:
            x, v_first = blk(x, v_first, step)
        return self.head(self.ln_out(x))


# ---------------------------------------------------------------------------
# Self-test and entry point
# ---------------------------------------------------------------------------


def selftest() -> None:
    """Chunked WKV7 == step WKV7, and the chunked model == the step model, in fp64."""
    torch.manual_seed(0)
    b, h, t, n = 2, 3, 50, 8  # 50: not a whole number of chunks
    r, k, v = (torch.randn(b, h, t, n, dtype=torch.float64) for _ in range(3))
    logw = -DECAY_SCALE * torch.rand(b, h, t, n, dtype=torch.float64)
    kk = F.normalize(torch.randn(b, h, t, n, dtype=torch.float64), dim=-1)
    a = torch.rand(b, h, t, n, dtype=torch.float64)
    s0 = torch.randn(b, h, n, n, dtype=torch.float64)
    y1, s1 = wkv7_step(r, logw, k, v, -kk, kk * a, s0)
    y2, s2 = wkv7_chunked(r, logw, k, v, -kk, kk * a, s0, 16)
    dy, ds = (y1 - y2).abs().max(), (s1 - s2).abs().max()
    print(f"wkv7 chunked vs step: max|dy| {dy:.2e} max|ds| {ds:.2e}")
    assert torch.allclose(y1, y2, atol=1e-9) and torch.allclose(s1, s2, atol=1e-9)
    cfg = Config7(vocab=64, n_layer=2, n_embd=32, head_size=16, ffn=64, ctx=32, chunk=8)
    cfg.dropout, cfg.lora_w, cfg.lora_a, cfg.lora_v, cfg.lora_g = 0.0, 8, 4, 4, 8
    model = RWKV7(cfg).double().eval()
    for p in model.parameters():  # non-trivial weights everywhere (zero-inits hide bugs)
        p.data += 0.1 * torch.randn_like(p)
    idx = torch.randint(0, 64, (2, 32))
    dl = (model(idx) - model(idx, step=True)).abs().max()
    print(f"model chunked vs step: max|dlogit| {dl:.2e}")
    assert dl < 1e-9


def parse() -> tuple[argparse.Namespace, Config7]:
    ap = v5.argument_parser(
        __doc__ or "", "tools/train/data/run7", 5.0, eval_every=300, sample_tokens=32, dropout=0.25
    )
    ap.add_argument("--shape", default="8x256", help="LAYERSxWIDTH (head size 64, FFN 3x)")
    args = ap.parse_args()
    if args.tiny:
        cfg = Config7(n_layer=2, n_embd=64, head_size=32, ffn=128, ctx=64, dropout=0.0)
    else:
        layers, width = (int(s) for s in args.shape.split("x"))
        cfg = Config7(n_layer=layers, n_embd=width, ffn=3 * width, dropout=args.dropout)
    return args, cfg


def main() -> None:
    args, cfg = parse()
    if args.selftest:
        selftest()
    elif args.merge:
        v5.merge_and_save(args)
    else:
        v5.train(args, cfg, RWKV7)


if __name__ == "__main__":
    main()
