"""Train a text classifier in torch, save it, and serve it with xembed on NumPy, without torch.

The model is the one of torch's text-classification tutorial (an ``nn.EmbeddingBag`` in mean mode followed by
an ``nn.Linear``, documents given as one flat tensor of token ids with ``offsets``), trained with its
optimiser settings on synthetic documents (each class draws its words from its own distribution).

1. ``train``: torch trains the model and saves ``model.pt`` (``torch.save``) and ``model.npz`` (the same
   ``state_dict``, as NumPy arrays, loadable without torch).
2. ``TextClassifier.load``: reads ``model.pt`` (``xembed.load_torch_state_dict``) or ``model.npz`` with NumPy
   only, into ``xembed.EmbeddingBag`` (torch's key ``embedding.weight``) and a NumPy linear layer.
3. The script classifies held-out documents with torch and with both checkpoints served on NumPy, and exits
   non-zero unless the logits agree to float32 rounding and the predicted classes are identical.

    python examples/serve_torch_model.py [--out DIR] [--epochs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import xembed

VOCAB, DIM, CLASSES = 2000, 32, 4


def make_documents(rng: np.random.Generator, n_docs: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthetic labelled documents: token ids in ``[1, VOCAB)`` drawn from a per-class distribution."""
    topics = np.random.default_rng(0).dirichlet(np.full(VOCAB - 1, 0.05), size=CLASSES)
    labels = rng.integers(0, CLASSES, n_docs)
    docs = [1 + rng.choice(VOCAB - 1, size=rng.integers(5, 60), p=topics[c]) for c in labels]
    return docs, labels


def flatten(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's batch layout: all tokens in one 1-D array, and the offset where each document starts."""
    lengths = np.array([len(d) for d in docs])
    return np.concatenate(docs), np.concatenate([[0], np.cumsum(lengths)[:-1]])


def train(out_dir: Path, epochs: int, seed: int = 0) -> Any:
    """Train the tutorial's model in torch; save ``model.pt`` and ``model.npz``; return the model."""
    import torch
    from torch import nn

    class TextClassificationModel(nn.Module):
        def __init__(self, vocab_size: int, embed_dim: int, num_class: int) -> None:
            super().__init__()
            self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
            self.fc = nn.Linear(embed_dim, num_class)
            self.embedding.weight.data.uniform_(-0.5, 0.5)
            self.fc.weight.data.uniform_(-0.5, 0.5)
            self.fc.bias.data.zero_()

        def forward(self, text: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
            return self.fc(self.embedding(text, offsets))

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TextClassificationModel(VOCAB, DIM, CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    docs, labels = make_documents(rng, 2000)
    for _ in range(epochs):
        order = rng.permutation(len(docs))
        for start in range(0, len(docs), 64):
            batch = order[start:start + 64]
            text, offsets = flatten([docs[i] for i in batch])
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(torch.from_numpy(text), torch.from_numpy(offsets)),
                                               torch.from_numpy(labels[batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
        scheduler.step()
    model.eval()
    torch.save(model.state_dict(), out_dir / "model.pt")
    np.savez(out_dir / "model.npz", **{k: t.detach().numpy() for k, t in model.state_dict().items()})
    return model


class TextClassifier:
    """The trained model served on NumPy: ``xembed.EmbeddingBag`` (mean) and a linear layer."""

    def __init__(self, embedding: xembed.EmbeddingBag, fc_weight: np.ndarray, fc_bias: np.ndarray) -> None:
        self.embedding, self.fc_weight, self.fc_bias = embedding, fc_weight, fc_bias

    @classmethod
    def load(cls, path: Path) -> TextClassifier:
        """Read the checkpoint with NumPy only (torch need not be installed): a ``.pt`` file written by
        ``torch.save`` through ``xembed.load_torch_state_dict``, or an ``.npz`` file through ``numpy.load``."""
        if Path(path).suffix == ".pt":
            checkpoint = xembed.load_torch_state_dict(path)
        else:
            with np.load(path) as npz:
                checkpoint = dict(npz)
        embedding = xembed.EmbeddingBag(VOCAB, DIM, mode="mean")
        embedding.load_state_dict(checkpoint, strict=False, prefix="embedding.")
        return cls(embedding, checkpoint["fc.weight"], checkpoint["fc.bias"])

    def logits(self, text: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return self.embedding(text, offsets) @ self.fc_weight.T + self.fc_bias

    def predict(self, docs: list[np.ndarray]) -> np.ndarray:
        return self.logits(*flatten(docs)).argmax(axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="where to write model.pt / model.npz (default: a temp dir)")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        model = train(out_dir, args.epochs)
        test_docs, test_labels = make_documents(np.random.default_rng(1), 1000)
        text, offsets = flatten(test_docs)
        with torch.no_grad():
            expected = model(torch.from_numpy(text), torch.from_numpy(offsets)).numpy()
        ok = True
        for name in ("model.npz", "model.pt"):
            got = TextClassifier.load(out_dir / name).logits(text, offsets)
            worst = float(np.max(np.abs(got - expected)))
            same_classes = bool(np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)))
            accuracy = float(np.mean(got.argmax(axis=1) == test_labels))
            print(f"{name}: held-out accuracy {accuracy:.3f}; largest logit difference xembed vs torch "
                  f"{worst:.2e}; same predicted classes: {same_classes}")
            ok = ok and same_classes and bool(np.allclose(got, expected, rtol=1e-5, atol=1e-5))
    if not ok:
        print("xembed on NumPy does not serve the torch model faithfully", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
