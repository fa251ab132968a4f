"""Train a bag-of-words classifier with xembed on NumPy, and the same model in torch, side by side.

The data is synthetic: each class has its own distribution over a vocabulary, documents have variable
length and are padded.  Both models start from the same weights and take the same SGD steps; the script
prints both losses and the largest difference of the embedding tables, and exits non-zero if they part.

    python examples/train_bag_of_words.py [--backend numpy|array_api_strict|torch] [--steps 200]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import xembed


def make_data(rng, n_docs=2048, vocab=500, n_classes=4, max_len=30, pad=0):
    topic = rng.dirichlet(np.full(vocab - 1, 0.05), size=n_classes)
    labels = rng.integers(0, n_classes, n_docs)
    docs = np.full((n_docs, max_len), pad, dtype=np.int64)
    for i, c in enumerate(labels):
        length = rng.integers(3, max_len + 1)
        docs[i, :length] = 1 + rng.choice(vocab - 1, size=length, p=topic[c])
    return docs, labels


def softmax_xent(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(labels)), labels]).mean()
    g = p
    g[np.arange(len(labels)), labels] -= 1
    return loss, g / len(labels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "array_api_strict", "torch"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2.0)
    args = ap.parse_args(argv)

    import torch
    from torch.nn import functional as tfn

    rng = np.random.default_rng(0)
    docs, labels = make_data(rng)
    vocab, dim, n_classes, batch = 500, 16, 4, 256
    emb0 = xembed.EmbeddingBag(vocab, dim, mode="mean", padding_idx=0, seed=1, dtype=np.float64).weight
    head0 = rng.standard_normal((dim, n_classes)) * 0.1

    if args.backend == "numpy":
        to_x, from_x = (lambda a: a.copy()), np.asarray
    elif args.backend == "torch":
        to_x, from_x = torch.from_numpy, lambda t: t.numpy()
    else:
        import array_api_strict as strict

        to_x, from_x = (lambda a: strict.asarray(a.copy())), (lambda a: np.asarray(a._array))
    emb_x, head_x = to_x(emb0.copy()), head0.copy()
    emb_t = torch.tensor(emb0, requires_grad=True)
    head_t = torch.tensor(head0, requires_grad=True)

    worst = 0.0
    for step in range(args.steps):
        sel = rng.integers(0, len(docs), batch)
        x, y = docs[sel], labels[sel]
        # xembed: forward + pullback by hand (the head is plain NumPy)
        h, pullback = xembed.embedding_bag_vjp(to_x(x), emb_x, mode="mean", padding_idx=0)
        h = from_x(h)
        loss_x, g_logits = softmax_xent(h @ head_x, y)
        g_h = g_logits @ head_x.T
        grad_emb, _ = pullback(to_x(g_h))
        head_x -= args.lr * (h.T @ g_logits)
        emb_x = emb_x - args.lr * grad_emb
        # torch reference
        ht = tfn.embedding_bag(torch.from_numpy(x), emb_t, mode="mean", padding_idx=0)
        loss_t = tfn.cross_entropy(ht @ head_t, torch.from_numpy(y))
        emb_t.grad = head_t.grad = None
        loss_t.backward()
        with torch.no_grad():
            emb_t -= args.lr * emb_t.grad
            head_t -= args.lr * head_t.grad
        worst = max(worst, float(np.abs(from_x(emb_x) - emb_t.detach().numpy()).max()))
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss xembed {loss_x:.6f}  torch {loss_t.item():.6f}  max |ΔW| {worst:.2e}")

    h = from_x(xembed.embedding_bag(to_x(docs), emb_x, mode="mean", padding_idx=0))
    acc = float(((h @ head_x).argmax(axis=1) == labels).mean())
    print(f"train accuracy {acc:.3f}; largest table difference vs torch over training {worst:.2e}")
    ok = worst < 1e-9 and acc > 0.6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
