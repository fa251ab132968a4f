"""xembed: Embedding and EmbeddingBag written once against the Python array API standard.

The same functions run on NumPy, CuPy, torch, JAX, Dask and array-api-strict arrays, with the semantics of
``torch.nn.functional.embedding`` / ``embedding_bag`` for every option, gradients (``*_vjp`` pullbacks on any
backend, torch autograd, JAX autodiff) and a typed error naming the argument for every bad input.

Functions: :func:`embedding`, :func:`embedding_bag`, their pullbacks :func:`embedding_vjp` and
:func:`embedding_bag_vjp`, :func:`renorm`, :func:`jit_value_checks`, :func:`load_torch_state_dict`.
Modules: :class:`Embedding`, :class:`EmbeddingBag`.  Sparse gradients: :class:`SparseGrad`.  torch's
``nn.Module`` drop-ins are in ``xembed.torch``; the choice of primitive implementations is
:mod:`xembed.primitives`.

Examples
--------
>>> import numpy as np, xembed
>>> W = np.eye(4, dtype=np.float32)
>>> xembed.embedding_bag(np.array([[0, 1], [2, 2]]), W, mode="sum")
array([[1., 1., 0., 0.],
       [0., 0., 2., 0.]], dtype=float32)
"""

from . import primitives
from ._api import embedding, embedding_bag, embedding_bag_vjp, embedding_vjp, jit_value_checks, renorm
from ._checkpoint import load_torch_state_dict
from ._modules import Embedding, EmbeddingBag
from ._quantized import QuantizedTable, quantize_rowwise
from ._sparse import SparseGrad

__version__ = "0.1.0"

__all__ = [
    "Embedding", "EmbeddingBag", "QuantizedTable", "SparseGrad", "embedding", "embedding_bag",
    "embedding_bag_vjp", "embedding_vjp", "jit_value_checks", "load_torch_state_dict", "primitives", "quantize_rowwise",
    "renorm",
]
