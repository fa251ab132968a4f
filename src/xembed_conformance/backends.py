"""Backend adapters: build the backend's arrays from NumPy values and read them back.

Every value the checker feeds a target is generated as a float64 / int64 NumPy array whose
values are exactly representable in the requested dtype, then converted here.
"""

from __future__ import annotations

import numpy as np

FLOAT_EPS = {
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
    "float32": 2.0**-23,
    "float64": 2.0**-52,
}

_PY_REPR_NP = {
    "float16": "np.float16",
    "float32": "np.float32",
    "float64": "np.float64",
    "int8": "np.int8",
    "int16": "np.int16",
    "int32": "np.int32",
    "int64": "np.int64",
    "bool": "np.bool_",
}


def literal(values: np.ndarray) -> str:
    """Python literal (nested lists) for ``values``; floats use round-trip repr."""
    if values.dtype == np.bool_:
        return repr(values.tolist())
    if np.issubdtype(values.dtype, np.integer):
        return repr(values.astype(np.int64).tolist())

    def fmt(x):
        if isinstance(x, list):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        if x != x:
            return "float('nan')"
        if x in (float("inf"), float("-inf")):
            return "float('inf')" if x > 0 else "-float('inf')"
        return repr(float(x))

    return fmt(values.astype(np.float64).tolist())


class Backend:
    name = "?"
    float_dtypes: tuple[str, ...] = ()
    int_dtypes: tuple[str, ...] = ("int32", "int64")
    autograd = False

    def __init__(self, device: str | None = None):
        self.device = device

    # conversion -------------------------------------------------------------
    def asarray(self, values: np.ndarray, dtype: str):
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def dtype_name(self, x) -> str:
        raise NotImplementedError

    def device_of(self, x):
        return getattr(x, "device", None)

    def expected_device(self):
        return self.device_of(self.asarray(np.zeros(1), "float64" if "float64" in self.float_dtypes else self.float_dtypes[0]))

    def is_array(self, x) -> bool:
        raise NotImplementedError

    def copy(self, x):
        raise NotImplementedError

    # reproduction snippets --------------------------------------------------
    def repro_imports(self) -> str:
        raise NotImplementedError

    def repro_array(self, values: np.ndarray, dtype: str) -> str:
        raise NotImplementedError


class NumpyBackend(Backend):
    name = "numpy"
    float_dtypes = ("float16", "float32", "float64")

    def asarray(self, values, dtype):
        return np.asarray(values).astype(np.dtype(dtype))

    def to_numpy(self, x):
        return np.asarray(x)

    def dtype_name(self, x):
        return np.asarray(x).dtype.name if isinstance(x, np.ndarray) else type(x).__name__

    def device_of(self, x):
        return "cpu"

    def is_array(self, x):
        return isinstance(x, np.ndarray)

    def copy(self, x):
        return np.array(x, copy=True)

    def repro_imports(self):
        return "import numpy as np"

    def repro_array(self, values, dtype):
        return f"np.asarray({literal(values)}, dtype={_PY_REPR_NP[dtype]})"


class TorchBackend(Backend):
    name = "torch"
    float_dtypes = ("float16", "bfloat16", "float32", "float64")
    autograd = True

    def __init__(self, device=None):
        import torch

        self.torch = torch
        super().__init__(device or "cpu")

    def asarray(self, values, dtype):
        t = self.torch
        arr = np.asarray(values)
        if dtype == "bool":
            return t.tensor(arr.astype(bool), device=self.device)
        return t.tensor(arr.astype(np.float64) if dtype in FLOAT_EPS else np.array(arr, copy=True)).to(
            dtype=getattr(t, dtype), device=self.device
        )

    def to_numpy(self, x):
        x = x.detach()
        if x.layout != self.torch.strided:
            x = x.to_dense()
        x = x.cpu()
        if x.dtype in (self.torch.float16, self.torch.bfloat16):
            x = x.to(self.torch.float64)
        return x.resolve_conj().resolve_neg().numpy()

    def dtype_name(self, x):
        return str(x.dtype).removeprefix("torch.")

    def device_of(self, x):
        return str(x.device)

    def is_array(self, x):
        return isinstance(x, self.torch.Tensor)

    def copy(self, x):
        return x.detach().clone()

    def repro_imports(self):
        return "import torch"

    def repro_array(self, values, dtype):
        return f"torch.tensor({literal(values)}, dtype=torch.{dtype}, device={self.device!r})"


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    float_dtypes = ("float32", "float64")

    def __init__(self, device=None):
        import array_api_strict

        self.xp = array_api_strict
        super().__init__(device)

    def asarray(self, values, dtype):
        return self.xp.asarray(np.asarray(values).astype(np.dtype(dtype)))

    def to_numpy(self, x):
        try:
            return np.from_dlpack(x)
        except Exception:
            return np.asarray(x)

    def dtype_name(self, x):
        return str(x.dtype).split(".")[-1]

    def device_of(self, x):
        return str(x.device)

    def is_array(self, x):
        return isinstance(x, self.xp._array_object.Array)

    def copy(self, x):
        return self.xp.asarray(x, copy=True)

    def repro_imports(self):
        return "import array_api_strict as xp"

    def repro_array(self, values, dtype):
        return f"xp.asarray({literal(values)}, dtype=xp.{dtype})"


class CupyBackend(Backend):
    name = "cupy"
    float_dtypes = ("float16", "float32", "float64")

    def __init__(self, device=None):
        import cupy

        self.cp = cupy
        super().__init__(device or "cuda")

    def asarray(self, values, dtype):
        return self.cp.asarray(np.asarray(values).astype(np.dtype(dtype)))

    def to_numpy(self, x):
        return self.cp.asnumpy(x)

    def dtype_name(self, x):
        return x.dtype.name

    def device_of(self, x):
        return str(x.device)

    def is_array(self, x):
        return isinstance(x, self.cp.ndarray)

    def copy(self, x):
        return x.copy()

    def repro_imports(self):
        return "import cupy as cp\nimport numpy as np"

    def repro_array(self, values, dtype):
        return f"cp.asarray({literal(values)}, dtype=cp.{'bool_' if dtype == 'bool' else dtype})"


BACKENDS = {
    "numpy": NumpyBackend,
    "torch": TorchBackend,
    "array_api_strict": ArrayApiStrictBackend,
    "cupy": CupyBackend,
}


def make_backend(name: str, device: str | None = None) -> Backend:
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise SystemExit(f"unknown backend {name!r}; choose from {sorted(BACKENDS)}") from None
    return cls(device)
