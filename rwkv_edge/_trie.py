"""Greedy longest-match byte trie: the core of the World tokenizer.

The World tokenizer is not BPE: at each position it emits the longest vocab
token that is a prefix of the remaining bytes (RWKV5_SPEC.md section 5.9).
That is a walk down a byte trie, done here in numba over flat arrays:

    node_token[node]      token id ending at this node, 0 if none     (n_nodes,)
    root_child[b]         node of the 1-byte prefix b, -1 if none      (256,)
    pair_child[a*256+b]   node of the 2-byte prefix ab, -1 if none     (65536,)
    edge_start[node]      CSR: children of node are edges              (n_nodes+1,)
                          edge_start[node] .. edge_start[node+1]-1
    edges[e]              child << 8 | byte, byte-sorted within a node  (n_edges,)

The first two levels are dense because nearly every token walk passes through
them and they have up to 256 children. Deeper nodes have 1.6 children on
average (World vocab), so a short scan of one packed array (one cache line,
not two arrays) beats a binary search there; wide nodes still get one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

I32 = npt.NDArray[np.int32]


@numba.njit(cache=True)
def _build(
    blob: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    ids: I32,
) -> tuple[I32, I32, I32, I32]:
    """Build the trie from tokens visited in lexicographic byte order.

    In sorted order a token shares a prefix with its predecessor; the nodes on
    that prefix already exist (held in ``path``), so only the remainder is new.
    Returns node_token and the edge list (parent, byte, child) in creation
    order, which is byte-sorted within each parent.
    """
    max_nodes = offsets[-1] + 1
    node_token = np.zeros(max_nodes, np.int32)
    e_parent = np.empty(max_nodes, np.int32)
    e_byte = np.empty(max_nodes, np.int32)
    e_child = np.empty(max_nodes, np.int32)
    path = np.zeros(offsets[-1] + 2, np.int32)  # path[d] = node at depth d of the previous token
    n_nodes, n_edges, prev = 1, 0, -1
    for t in order:
        s, e = offsets[t], offsets[t + 1]
        lcp = 0
        if prev >= 0:
            ps, pe = offsets[prev], offsets[prev + 1]
            while lcp < e - s and lcp < pe - ps and blob[s + lcp] == blob[ps + lcp]:
                lcp += 1
        for d in range(lcp + 1, e - s + 1):
            e_parent[n_edges] = path[d - 1]
            e_byte[n_edges] = blob[s + d - 1]
            e_child[n_edges] = n_nodes
            path[d] = n_nodes
            n_nodes += 1
            n_edges += 1
        node_token[path[e - s]] = ids[t]
        prev = t
    return node_token[:n_nodes], e_parent[:n_edges], e_byte[:n_edges], e_child[:n_edges]


@numba.njit(cache=True)
def _csr(n_nodes: int, e_parent: I32, e_byte: I32, e_child: I32) -> tuple[I32, I32, I32]:
    """Group edges by parent (stable, so each parent's bytes stay sorted)."""
    start = np.zeros(n_nodes + 1, np.int32)
    for p in e_parent:
        start[p + 1] += 1
    for i in range(n_nodes):
        start[i + 1] += start[i]
    fill = start[:-1].copy()
    out_byte = np.empty(len(e_parent), np.int32)
    out_node = np.empty(len(e_parent), np.int32)
    for k in range(len(e_parent)):
        p = e_parent[k]
        out_byte[fill[p]] = e_byte[k]
        out_node[fill[p]] = e_child[k]
        fill[p] += 1
    return start, out_byte, out_node


@numba.njit(cache=True, inline="always")
def _child(node: int, b: int, edge_start: I32, edges: I32) -> int:
    lo, hi = edge_start[node], edge_start[node + 1]
    end = hi
    while hi - lo > 8:  # wide node: narrow lo towards the first edge with byte >= b
        mid = (lo + hi) >> 1
        if (edges[mid] & 255) < b:
            lo = mid + 1
        else:
            hi = mid
    while lo < end:  # scan from lo: the match, if any, is at most a few edges on
        e = edges[lo]
        eb = e & 255
        if eb >= b:
            return e >> 8 if eb == b else -1
        lo += 1
    return -1


@numba.njit(cache=True)
def _encode(
    data: npt.NDArray[np.uint8],
    node_token: I32,
    root_child: I32,
    pair_child: I32,
    edge_start: I32,
    edges: I32,
) -> tuple[I32, int]:
    """Greedy longest match. Returns (ids, count); count = -1-pos if no token matches at pos."""
    n = len(data)
    out = np.empty(n, np.int32)
    k = 0
    i = 0
    while i < n:
        best, best_end = 0, i
        node = root_child[data[i]]
        if node >= 0 and node_token[node] != 0:
            best, best_end = node_token[node], i + 1
        if node >= 0 and i + 1 < n:
            node = pair_child[data[i] * 256 + data[i + 1]]
            j = i + 2
            while node >= 0:
                if node_token[node] != 0:
                    best, best_end = node_token[node], j
                if j >= n:
                    break
                node = _child(node, data[j], edge_start, edges)
                j += 1
        if best == 0:
            return out, -1 - i
        out[k] = best
        k += 1
        i = best_end
    return out, k


@dataclass(frozen=True)
class ByteTrie:
    """An immutable trie over byte-string tokens; ``encode`` is greedy longest match."""

    node_token: I32
    root_child: I32
    pair_child: I32
    edge_start: I32
    edges: I32

    @staticmethod
    def build(tokens: Sequence[bytes], ids: Sequence[int]) -> ByteTrie:
        """Tokens must be distinct and non-empty; ids must be > 0 (0 marks 'no token')."""
        if len(set(tokens)) != len(tokens) or any(len(t) == 0 for t in tokens):
            raise ValueError("trie tokens must be distinct, non-empty byte strings")
        if any(i <= 0 for i in ids):
            raise ValueError("trie token ids must be positive")
        blob = np.frombuffer(b"".join(tokens), np.uint8)
        offsets = np.zeros(len(tokens) + 1, np.int64)
        offsets[1:] = np.cumsum([len(t) for t in tokens])
        order = np.array(sorted(range(len(tokens)), key=tokens.__getitem__), np.int64)
        node_token, e_par, e_byte, e_child = _build(blob, offsets, order, np.asarray(ids, np.int32))
        start, byte, node = _csr(len(node_token), e_par, e_byte, e_child)
        root_child = np.full(256, -1, np.int32)
        root_child[byte[start[0] : start[1]]] = node[start[0] : start[1]]
        pair_child = np.full(65536, -1, np.int32)
        for a in range(256):
            r = root_child[a]
            if r >= 0:
                lo, hi = start[r], start[r + 1]
                pair_child[a * 256 + byte[lo:hi]] = node[lo:hi]
        if len(node_token) >= 1 << 23:
            raise ValueError("vocab too large for packed 32-bit trie edges")
        return ByteTrie(node_token, root_child, pair_child, start, node << 8 | byte)

    def encode(self, data: bytes) -> list[int]:
        """Token ids of ``data``; ValueError if some position starts no token."""
        arr = np.frombuffer(data, np.uint8)
        out, k = _encode(
            arr,
            self.node_token,
            self.root_child,
            self.pair_child,
            self.edge_start,
            self.edges,
        )
        if k < 0:
            pos = -1 - k
            raise ValueError(
                f"no vocab token matches the bytes at offset {pos}: {bytes(arr[pos : pos + 8])!r}"
            )
        return out[:k].tolist()


@numba.njit(cache=True)
def _gather(
    ids: npt.NDArray[np.int64], blob: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint8], int]:
    """Concatenate the bytes of ``ids``; (bytes, -1), or (empty, position of a bad id)."""
    n_ids = len(offsets) - 1
    total = 0
    for k in range(len(ids)):
        t = ids[k]
        if t < 0 or t >= n_ids:
            return np.empty(0, np.uint8), k
        total += offsets[t + 1] - offsets[t]
    out = np.empty(total, np.uint8)
    pos = 0
    for t in ids:
        s, e = offsets[t], offsets[t + 1]
        out[pos : pos + e - s] = blob[s:e]
        pos += e - s
    return out, -1


class TokenTable:
    """id -> bytes as one blob plus offsets, for decoding long id lists in numba."""

    def __init__(self, table: Sequence[bytes]) -> None:
        self.blob = np.frombuffer(b"".join(table), np.uint8)
        self.offsets = np.zeros(len(table) + 1, np.int64)
        self.offsets[1:] = np.cumsum([len(t) for t in table])

    def decode(self, ids: npt.ArrayLike) -> bytes:
        """Bytes of ``ids``; IndexError naming the first id outside the table, TypeError
        for ids that are not ints (1.5 must not be read as 1)."""
        raw = np.asarray(ids)
        if raw.size and raw.dtype.kind not in "iu":
            raise TypeError(f"token ids must be ints, got an array of {raw.dtype}")
        arr = raw.astype(np.int64).reshape(-1)
        out, bad = _gather(arr, self.blob, self.offsets)
        if bad >= 0:
            raise IndexError(f"token id {arr[bad]} is outside [0, {len(self.offsets) - 1})")
        return out.tobytes()
