"""Read a ``torch.save`` checkpoint of tensors into NumPy arrays, without torch.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` pickles the object, each tensor's storage is a raw
little-endian file ``<name>/data/<key>``.  The pickle is read with an unpickler that knows only the few globals a
state dict of tensors needs (a dict, the tensor and parameter rebuilders, the storage types) and refuses every
other one, as ``torch.load(weights_only=True)`` does: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any, Literal

import numpy as np

__all__ = ["load_torch_state_dict"]

# torch's storage classes (the names torch.save still writes) and their NumPy dtypes; bfloat16 is read as its bits.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16, "BFloat16Storage": np.uint16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    """A storage class named in the pickle: stands for its dtype."""

    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage: tuple[np.ndarray, str], offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: the tensor's view of its storage, copied (storages may be shared)."""
    flat, name = storage
    if any(s > 0 for s in size) and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= len(flat):
        msg = f"a tensor of shape {tuple(size)} reaches past the end of its storage in the checkpoint"
        raise ValueError(msg)
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                           strides=tuple(s * flat.itemsize for s in stride), writeable=False)
    array = np.array(view)
    if name == "BFloat16Storage":  # the upper half of a float32: exact
        array = np.asarray(array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _Storage(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(archive.open(prefix + "data.pkl"))
        self.archive, self.prefix = archive, prefix
        names = set(archive.namelist())
        big = prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big"
        self.byteorder: Literal["<", ">"] = ">" if big else "<"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[module, name]
        except KeyError:
            msg = (f"the checkpoint holds `{module}.{name}`, which is not part of a state dict of tensors; "
                   "load it with torch and save `model.state_dict()`")
            raise pickle.UnpicklingError(msg) from None

    def persistent_load(self, pid: Any) -> tuple[np.ndarray, str]:
        kind, storage, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage, _Storage):
            msg = f"unknown storage record {pid!r} in the checkpoint"
            raise pickle.UnpicklingError(msg)
        raw = self.archive.read(f"{self.prefix}data/{key}")
        flat = np.frombuffer(raw, dtype=storage.dtype.newbyteorder(self.byteorder), count=int(numel))
        return flat.astype(storage.dtype), storage.name  # native byte order


def load_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``torch.save``'d state dict into NumPy arrays, without torch.

    Parameters
    ----------
    path : str or path-like
        A file written by ``torch.save(model.state_dict(), path)`` (torch's zip format, torch 1.6 or newer).

    Returns
    -------
    dict of str to numpy.ndarray
        The state dict's keys and tensors, as NumPy arrays of the tensors' dtypes (bfloat16 becomes float32,
        exactly).

    Raises
    ------
    ValueError
        ``path`` is not a checkpoint in torch's zip format, or holds something else than tensors (a whole
        pickled model, optimizer objects): no code from the file is ever run.

    See Also
    --------
    Embedding.load_state_dict : Loads the result into a module.

    Notes
    -----
    Only what a state dict of dense tensors needs is read, as ``torch.load(weights_only=True)`` allows; a
    checkpoint of anything else is refused (MOD-STATE-DICT).

    Examples
    --------
    >>> import torch, xembed
    >>> model = torch.nn.Sequential(torch.nn.EmbeddingBag(10, 4))
    >>> torch.save(model.state_dict(), "model.pt")
    >>> state = xembed.load_torch_state_dict("model.pt")
    >>> {key: (array.shape, str(array.dtype)) for key, array in state.items()}
    {'0.weight': ((10, 4), 'float32')}
    >>> xembed.EmbeddingBag(10, 4).load_state_dict(state, prefix="0.")
    IncompatibleKeys(missing_keys=[], unexpected_keys=[])
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        msg = f"`path` {os.fspath(path)!r} is not a checkpoint in torch's zip format (torch.save, torch >= 1.6)"
        raise ValueError(msg) from e
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            msg = f"`path` {os.fspath(path)!r} has no torch checkpoint record (data.pkl)"
            raise ValueError(msg)
        try:
            state = _Unpickler(archive, pickles[0].removesuffix("data.pkl")).load()
        except pickle.UnpicklingError as e:
            msg = f"`path` {os.fspath(path)!r}: {e}"
            raise ValueError(msg) from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        msg = f"`path` {os.fspath(path)!r} holds a {type(state).__name__}, not a state dict of tensors"
        raise ValueError(msg)
    return dict(state)
