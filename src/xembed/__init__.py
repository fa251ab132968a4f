"""xembed: Embedding and EmbeddingBag written once against the Python array API standard.

Runs unchanged on NumPy, CuPy, torch and array-api-strict arrays, with torch.nn.functional's semantics
and gradients (``*_vjp`` pullbacks, or torch autograd on torch tensors).
"""

from ._api import embedding, embedding_bag, embedding_bag_vjp, embedding_vjp, jit_value_checks, renorm
from ._modules import Embedding, EmbeddingBag
from ._quantized import QuantizedTable, quantize_rowwise
from ._sparse import SparseGrad

__version__ = "0.1.0"

__all__ = [
    "Embedding", "EmbeddingBag", "QuantizedTable", "SparseGrad", "embedding", "embedding_bag",
    "embedding_bag_vjp", "embedding_vjp", "jit_value_checks", "quantize_rowwise", "renorm",
]
