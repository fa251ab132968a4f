"""xembed for torch users: drop-ins for ``torch.nn.Embedding`` / ``torch.nn.EmbeddingBag`` and
``torch.nn.functional.embedding`` / ``embedding_bag``.

* :class:`Embedding`, :class:`EmbeddingBag` — ``torch.nn`` module subclasses (torch's constructor
  arguments, ``from_pretrained``, ``state_dict`` key ``weight``) whose forward is xembed's.
* :class:`QuantizedEmbeddingBag` — an inference module over a row-wise quantized table (a uint8 buffer in
  torch's prepack layout; ``from_float`` / ``from_torch``); its forward is xembed's, every mode.
* :func:`embedding`, :func:`embedding_bag` — eager: :func:`xembed.embedding` / :func:`xembed.embedding_bag`;
  under ``torch.compile`` / ``torch.export`` and ``torch.func`` transforms: the ``xembed::*`` custom ops (no
  graph break, symbolic sizes, batching rules), as the generic functions themselves do (docs/torch.md).

Importing this module imports torch and registers the ``xembed::`` ops.  The backend-agnostic
:class:`xembed.Embedding` is unchanged.
"""

from ._functional import embedding, embedding_bag
from ._modules import Embedding, EmbeddingBag
from ._quantized import QuantizedEmbeddingBag

__all__ = ["Embedding", "EmbeddingBag", "QuantizedEmbeddingBag", "embedding", "embedding_bag"]
