"""Standard workloads of the xembed benchmark suite (data generated with NumPy, seeded)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Workload:
    name: str
    kind: str  # "bag" (embedding_bag) or "lookup" (plain embedding)
    V: int
    D: int
    weight: np.ndarray
    input: np.ndarray  # 1-D indices (bag, with offsets) or N-D (lookup / 2-D padded bags)
    offsets: np.ndarray | None  # (B,) torch-style start offsets, or None for 2-D input
    padding_idx: int | None = None
    psw: np.ndarray | None = None
    note: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_bags(self) -> int:
        if self.kind == "lookup":
            return int(self.input.size)
        return int(self.offsets.shape[0]) if self.offsets is not None else int(self.input.shape[0])

    def n_valid(self) -> int:
        """Number of non-padding positions (rows actually read)."""
        if self.padding_idx is None:
            return int(self.input.size)
        return int((self.input != self.padding_idx).sum())

    def traffic_bytes(self) -> int:
        """Bytes of rows read + output written (the lower bound of memory traffic of a forward)."""
        item = self.weight.dtype.itemsize
        return (self.n_valid() + self.num_bags) * self.D * item


def _weights(rng, v, d, dtype=np.float32):
    w = np.empty((v, d), dtype=dtype)
    # fill in chunks to keep the temporary float64 small
    step = max(1, (1 << 24) // max(d, 1))
    for s in range(0, v, step):
        w[s : s + step] = rng.standard_normal((min(step, v - s), d), dtype=np.float32)
    return w


def _lengths_offsets(rng, b, l_mean):
    lens = rng.integers(max(1, l_mean // 2), 3 * l_mean // 2 + 1, b)
    offs = np.zeros(b, dtype=np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    return lens, offs


def zipf_indices(rng, v, n, alpha=1.1):
    """n indices in [0, v) with P(rank k) ~ k^-alpha, ranks scattered over the table by a permutation."""
    k = np.arange(1, v + 1, dtype=np.float64)
    cdf = np.cumsum(k ** -alpha)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n))
    perm = rng.permutation(v)
    return perm[np.minimum(ranks, v - 1)].astype(np.int64)


def make(name: str, quick: bool = False, seed: int = 0, dtype=np.float32) -> Workload:
    rng = np.random.default_rng(seed)
    if name in ("dlrm", "dlrm_zipf"):
        V, D, B, L = (10**5, 128, 1024, 20) if quick else (10**6, 128, 4096, 20)
        lens, offs = _lengths_offsets(rng, B, L)
        n = int(lens.sum())
        if name == "dlrm":
            idx = rng.integers(0, V, n, dtype=np.int64)
            note = f"DLRM-like: V={V}, D={D}, B={B}, L uniform in [{L//2},{3*L//2}] (mean {n/B:.1f}), uniform ids"
        else:
            idx = zipf_indices(rng, V, n, 1.1)
            note = (f"DLRM-like with Zipf(1.1) ids: V={V}, D={D}, B={B}, mean L {n/B:.1f}, "
                    f"{np.unique(idx).size} distinct rows")
        psw = rng.random(n, dtype=np.float32).astype(dtype)
        return Workload(name, "bag", V, D, _weights(rng, V, D, dtype), idx, offs, None, psw, note)
    if name == "large_batch":
        V, D, B, L = (10**5, 64, 8192, 32) if quick else (10**6, 64, 65536, 32)
        lens, offs = _lengths_offsets(rng, B, L)
        n = int(lens.sum())
        idx = rng.integers(0, V, n, dtype=np.int64)
        psw = rng.random(n, dtype=np.float32).astype(dtype)
        note = f"large batch: V={V}, D={D}, B={B}, L uniform in [{L//2},{3*L//2}] (n={n})"
        return Workload(name, "bag", V, D, _weights(rng, V, D, dtype), idx, offs, None, psw, note)
    if name == "text_cls":
        V, D, B, L = (10**5, 64, 1024, 50) if not quick else (2 * 10**4, 64, 256, 50)
        lens = rng.integers(5, 2 * L - 4, B)
        Lmax = int(lens.max())
        inp = np.zeros((B, Lmax), dtype=np.int64)  # padding_idx = 0 fills the tail of each row
        ids = rng.integers(1, V, (B, Lmax), dtype=np.int64)
        mask = np.arange(Lmax)[None, :] < lens[:, None]
        inp[mask] = ids[mask]
        psw = rng.random((B, Lmax), dtype=np.float32).astype(dtype)
        note = (f"text classification: V={V}, D={D}, 2-D input {B}x{Lmax} padded with padding_idx=0, "
                f"lengths uniform in [5,{2*L-5}] (mean {lens.mean():.1f}, {100*(1-mask.mean()):.0f}% padding)")
        return Workload(name, "bag", V, D, _weights(rng, V, D, dtype), inp, None, 0, psw, note)
    if name == "gpt2_tokens":
        V, D = 50257, 768
        shape = (8, 512) if quick else (64, 512)
        inp = rng.integers(0, V, shape, dtype=np.int64)
        note = f"GPT-2 token embedding: V={V}, D={D}, input {shape[0]}x{shape[1]} (plain embedding)"
        return Workload(name, "lookup", V, D, _weights(rng, V, D, dtype), inp, None, None, None, note)
    msg = f"unknown workload {name!r}"
    raise ValueError(msg)


ALL = ["dlrm", "large_batch", "text_cls", "gpt2_tokens", "dlrm_zipf"]


def bag_structure(w: Workload):
    """(idx (n,), offsets (B+1,), valid (n,) bool or None) flattened, torch semantics, for baselines."""
    if w.offsets is None:
        B, L = w.input.shape
        idx = w.input.reshape(-1)
        offs = np.arange(0, B * L + 1, L, dtype=np.int64)
    else:
        idx = w.input
        offs = np.concatenate([w.offsets, [idx.shape[0]]]).astype(np.int64)
    valid = None if w.padding_idx is None else idx != w.padding_idx
    return idx, offs, valid
