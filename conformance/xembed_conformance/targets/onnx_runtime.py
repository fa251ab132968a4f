"""``torch.onnx.export`` + onnxruntime (CPU) as a conformance target: forward only.

    xembed-conformance --impl xembed_conformance.targets.onnx_runtime --backend torch

Each call exports ``torch.nn.functional.embedding`` / ``embedding_bag`` with the call's options as an ONNX
model (TorchScript exporter, every dimension dynamic, the weight a graph input; one export per distinct
options / dtypes / ranks, cached) and runs it with onnxruntime's CPU provider on the NumPy views of the
arguments.  The model cannot write to the caller's weight, so ``max_norm``'s in-place renorm is not
performed on it (README Findings).  Gradients are not offered (``conformance_gradients = "none"``).
Needs ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

# ruff: noqa: N812  # torch's customary `F`
import io
import logging
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

conformance_gradients = "none"  # forward only: the checker skips the gradient checks

_SESSIONS: dict[tuple[Any, ...], Any] = {}


class _Call(torch.nn.Module):
    def __init__(self, fn: str, kwargs: dict[str, Any]):
        super().__init__()
        self.fn, self.kwargs = fn, kwargs

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.fn == "embedding":
            return F.embedding(args[0], args[1], **self.kwargs)
        names = self.kwargs.pop("_names")
        try:
            extra = dict(zip(names, args[2:], strict=True))
            return F.embedding_bag(args[0], args[1], **extra, **self.kwargs)
        finally:
            self.kwargs["_names"] = names


def _session(fn: str, kwargs: dict[str, Any], names: list[str], args: list[torch.Tensor]) -> Any:
    import onnxruntime as ort

    key = (fn, tuple(sorted((k, repr(v)) for k, v in kwargs.items())), tuple(names),
           tuple((a.dtype, a.dim()) for a in args))
    if key not in _SESSIONS:
        all_names = ["input", "weight", *names]
        axes = {n: {i: f"{n}_{i}" for i in range(a.dim())} for n, a in zip(all_names, args, strict=True)}
        axes["out"] = {0: "out_0", 1: "out_1"} if fn == "embedding_bag" else {
            i: f"out_{i}" for i in range(args[0].dim() + 1)}
        buf = io.BytesIO()
        model = _Call(fn, {**kwargs, "_names": names} if fn == "embedding_bag" else dict(kwargs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(model, tuple(a.detach().clone() for a in args), buf,  # type: ignore[arg-type]
                              dynamo=False,
                              input_names=all_names, output_names=["out"], dynamic_axes=axes)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        _SESSIONS[key] = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def _run(fn: str, args: list[torch.Tensor], names: list[str], kwargs: dict[str, Any]) -> torch.Tensor:
    sess = _session(fn, kwargs, names, args)
    feeds = {i.name: a.detach().cpu().numpy() for i, a in zip(sess.get_inputs(), args, strict=False)}
    (out,) = sess.run(["out"], feeds)
    return torch.from_numpy(np.asarray(out))


def embedding(input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> torch.Tensor:
    kwargs = {"padding_idx": padding_idx, "max_norm": max_norm, "norm_type": norm_type,
              "scale_grad_by_freq": scale_grad_by_freq, "sparse": sparse}
    return _run("embedding", [input, weight], [], kwargs)


def embedding_bag(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor | None = None,
                  max_norm: float | None = None, norm_type: float = 2, scale_grad_by_freq: bool = False,
                  mode: str = "mean", sparse: bool = False, per_sample_weights: torch.Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> torch.Tensor:
    names, extra = [], []
    if offsets is not None:
        names.append("offsets")
        extra.append(offsets)
    if per_sample_weights is not None:
        names.append("per_sample_weights")
        extra.append(per_sample_weights)
    kwargs = {"max_norm": max_norm, "norm_type": norm_type, "mode": mode, "scale_grad_by_freq": scale_grad_by_freq,
              "sparse": sparse, "include_last_offset": include_last_offset, "padding_idx": padding_idx}
    return _run("embedding_bag", [input, weight, *extra], names, kwargs)
