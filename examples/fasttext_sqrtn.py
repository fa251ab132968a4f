"""A fastText-style text classifier with xembed's ``mode='sqrtn'`` and ``lengths=``, checked against torch.

fastText represents a document by the normalised sum of the embeddings of its words and of its hashed word
bigrams, then a linear classifier.  Here the normalisation is TensorFlow's ``sqrtn`` combiner
(``sum / sqrt(number of tokens)``), which torch's EmbeddingBag does not offer, and the ragged batch is given by
``lengths`` (one token count per document) rather than offsets.  The same model is written in torch with what
torch does offer (``mode='sum'`` with ``per_sample_weights = 1 / sqrt(length)`` repeated over each document);
both start from the same weights and take the same SGD steps, and the script exits non-zero if they part.

    python examples/fasttext_sqrtn.py [--backend numpy|array_api_strict|torch] [--steps 150]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import xembed

VOCAB, BUCKETS, DIM, CLASSES = 400, 1000, 16, 4


def make_data(rng: np.random.Generator, n_docs: int = 1500) -> tuple[list[np.ndarray], np.ndarray]:
    """Documents of 3..40 words drawn from per-class word distributions; labels."""
    topic = rng.dirichlet(np.full(VOCAB, 0.05), size=CLASSES)
    labels = rng.integers(0, CLASSES, n_docs)
    docs = [rng.choice(VOCAB, size=int(rng.integers(3, 41)), p=topic[c]) for c in labels]
    return docs, labels


def tokens(doc: np.ndarray) -> np.ndarray:
    """fastText's input: the word ids followed by the ids of its hashed bigrams (rows VOCAB .. VOCAB+BUCKETS)."""
    bigrams = VOCAB + (doc[:-1] * 1_000_003 + doc[1:]) % BUCKETS
    return np.concatenate([doc, bigrams])


def batch(docs: list[np.ndarray], sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    toks = [tokens(docs[i]) for i in sel]
    return np.concatenate(toks), np.array([t.size for t in toks])


def softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(labels)), labels]).mean())
    p[np.arange(len(labels)), labels] -= 1
    return loss, p / len(labels)


def converters(backend: str) -> tuple[Callable[[np.ndarray], Any], Callable[[Any], np.ndarray]]:
    if backend == "torch":
        import torch

        return torch.from_numpy, lambda t: t.numpy()
    if backend == "array_api_strict":
        import array_api_strict as strict

        return (lambda a: strict.asarray(a.copy())), (lambda a: np.asarray(a._array))
    return (lambda a: a.copy()), np.asarray


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "array_api_strict", "torch"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1.0)
    args = ap.parse_args(argv)

    import torch

    rng = np.random.default_rng(0)
    docs, labels = make_data(rng)
    to_x, from_x = converters(args.backend)
    emb0 = rng.standard_normal((VOCAB + BUCKETS, DIM)) * 0.1
    head0 = rng.standard_normal((DIM, CLASSES)) * 0.1
    emb_x, head_x = to_x(emb0.copy()), head0.copy()
    emb_t, head_t = torch.tensor(emb0, requires_grad=True), torch.tensor(head0, requires_grad=True)

    worst = 0.0
    for step in range(args.steps):
        sel = rng.integers(0, len(docs), 128)
        flat, lengths = batch(docs, sel)
        y = labels[sel]
        # xembed: sqrtn over ragged documents given by their lengths; the pullback gives the table gradient
        h_x, pullback = xembed.embedding_bag_vjp(to_x(flat), emb_x, mode="sqrtn", lengths=to_x(lengths))
        h = from_x(h_x)
        loss_x, g_logits = softmax_xent(h @ head_x, y)
        grad_emb, _ = pullback(to_x(g_logits @ head_x.T))
        head_x -= args.lr * (h.T @ g_logits)
        emb_x = emb_x - args.lr * grad_emb
        # torch: the same model with sum mode and per_sample_weights = 1/sqrt(length)
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        psw = torch.from_numpy(np.repeat(1.0 / np.sqrt(lengths), lengths))
        ht = torch.nn.functional.embedding_bag(torch.from_numpy(flat), emb_t, offsets, mode="sum",
                                               per_sample_weights=psw)
        loss_t = torch.nn.functional.cross_entropy(ht @ head_t, torch.from_numpy(y))
        emb_t.grad = head_t.grad = None
        torch.autograd.backward(loss_t)
        with torch.no_grad():
            emb_t -= args.lr * emb_t.grad
            head_t -= args.lr * head_t.grad
        worst = max(worst, float(np.abs(from_x(emb_x) - emb_t.detach().numpy()).max()))
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss xembed {loss_x:.6f}  torch {loss_t.item():.6f}  max |ΔW| {worst:.2e}")

    flat, lengths = batch(docs, np.arange(len(docs)))
    h = from_x(xembed.embedding_bag(to_x(flat), emb_x, mode="sqrtn", lengths=to_x(lengths)))
    acc = float(((h @ head_x).argmax(axis=1) == labels).mean())
    print(f"train accuracy {acc:.3f}; largest table difference vs torch over training {worst:.2e}")
    ok = worst < 1e-9 and acc > 0.6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
