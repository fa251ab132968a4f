"""Quantized tables on dask arrays (spec QUANT-DASK): packed rows in row chunks, input and offsets in chunks of
their own; every width, mode and option against xembed on the same table as NumPy arrays (itself checked against
torch's quantized ops in ``test_quantized.py``), ``sum`` against torch's ops directly; errors at ``.compute()``.
Computed with dask's synchronous scheduler (the graphs are the float path's, run on a cluster in
``test_dask.py``)."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip

import xembed

dask: Any = importlib.import_module("dask")  # the `test` extra: a missing install must fail, not skip
da: Any = importlib.import_module("dask.array")

Q = torch.ops.quantized
BAG_OP = {8: Q.embedding_bag_byte_rowwise_offsets, 4: Q.embedding_bag_4bit_rowwise_offsets,
          2: Q.embedding_bag_2bit_rowwise_offsets}
N, D = 23, 8
RNG = np.random.default_rng(2626)
WEIGHT = (RNG.standard_normal((N, D)) * 1.5).astype(np.float32)
IDX = RNG.integers(0, N, 40)
IDX[[5, 6, 12]] = 4  # padding positions (padding_idx=4), one bag all padding
OFFSETS = np.array([0, 3, 3, 5, 7, 13, 21, 21, 26, 39])


def compute(x: Any) -> np.ndarray:
    return np.asarray(dask.compute(x, scheduler="synchronous")[0])


def tables(bits: int) -> tuple[xembed.QuantizedTable, xembed.QuantizedTable]:
    """The same packed bytes as a NumPy table and as a dask table in row chunks of 5."""
    numpy_table = xembed.quantize_rowwise(WEIGHT, bits)
    dask_table = xembed.QuantizedTable.from_packed(da.from_array(numpy_table.packed, chunks=(5, -1)), bits)
    return numpy_table, dask_table


CASES = [{"mode": "sum"}, {"mode": "mean"}, {"mode": "max"}, {"mode": "min"}, {"mode": "sqrtn"},
         {"mode": "sum", "padding_idx": 4}, {"mode": "mean", "padding_idx": -19}, {"mode": "max", "padding_idx": 4},
         {"mode": "sum", "psw": True}, {"mode": "sum", "psw": True, "padding_idx": 4},
         {"mode": "mean", "psw": True}, {"mode": "mean", "include_last_offset": True},
         {"mode": "sum", "lengths": True, "padding_idx": 4}, {"mode": "mean", "two_d": True, "padding_idx": 4}]


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_bags_equal_the_numpy_tables(bits: int, case: dict[str, Any]) -> None:
    """QUANT-FORWARD on dask: the NumPy table's bags (every mode, padding, per_sample_weights, last offset,
    lengths, a 2-D input), output in the bag chunks (DASK-CHUNKS)."""
    numpy_table, dask_table = tables(bits)
    case = dict(case)
    kw: dict[str, Any] = {k: case.pop(k) for k in ("mode", "padding_idx", "include_last_offset") if k in case}
    idx: np.ndarray = IDX
    offsets: np.ndarray | None = OFFSETS
    if kw.get("include_last_offset"):
        offsets = np.concatenate([OFFSETS, [IDX.shape[0]]])
    args: dict[str, Any] = {}
    if case.pop("psw", False):
        args["per_sample_weights"] = np.asarray(RNG.uniform(-1, 2, IDX.shape[0]), np.float32)
    if case.pop("two_d", False):
        idx, offsets = IDX.reshape(8, 5), None
    expected = xembed.embedding_bag(idx, numpy_table, offsets, **kw, **args)
    dargs = {k: da.from_array(x, chunks=7) for k, x in args.items()}
    didx = da.from_array(idx, chunks=7 if idx.ndim == 1 else (3, -1))
    if case.pop("lengths", False):
        lengths = np.diff(np.concatenate([OFFSETS, [IDX.shape[0]]]))
        expected = xembed.embedding_bag(idx, numpy_table, lengths=lengths, **kw, **args)
        out = xembed.embedding_bag(didx, dask_table, lengths=da.from_array(lengths, chunks=4), **kw, **dargs)
    else:
        doffsets = None if offsets is None else da.from_array(offsets, chunks=4)
        out = xembed.embedding_bag(didx, dask_table, doffsets, **kw, **dargs)
    assert isinstance(out, da.Array)
    assert out.dtype == np.float32
    np.testing.assert_allclose(compute(out), expected, rtol=2e-6, atol=2e-5)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_sum_equals_torchs_quantized_op(bits: int) -> None:
    numpy_table, dask_table = tables(bits)
    psw = np.asarray(RNG.uniform(-1, 2, IDX.shape[0]), np.float32)
    expected = BAG_OP[bits](torch.from_numpy(numpy_table.packed), torch.from_numpy(IDX), torch.from_numpy(OFFSETS),
                            mode=0, per_sample_weights=torch.from_numpy(psw), include_last_offset=False).numpy()
    out = xembed.embedding_bag(da.from_array(IDX, chunks=7), dask_table, da.from_array(OFFSETS, chunks=4),
                               mode="sum", per_sample_weights=da.from_array(psw, chunks=7))
    np.testing.assert_allclose(compute(out), expected, rtol=2e-6, atol=2e-5)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_lookups_are_the_dequantized_rows(bits: int) -> None:
    numpy_table, dask_table = tables(bits)
    deq = numpy_table.dequantize()
    for idx, chunks in ((IDX, 7), (IDX.reshape(8, 5), (3, 2)), (np.zeros(0, np.int64), 1)):
        out = xembed.embedding(da.from_array(idx, chunks=chunks), dask_table, padding_idx=4)
        assert out.chunks[:-1] == da.from_array(idx, chunks=chunks).chunks
        np.testing.assert_array_equal(compute(out), deq[idx])


def test_numpy_arguments_next_to_a_dask_table_and_the_reverse() -> None:
    """DASK-DISPATCH: a NumPy table with a dask input, a dask table with NumPy indices."""
    numpy_table, dask_table = tables(8)
    expected = xembed.embedding_bag(IDX, numpy_table, OFFSETS, mode="sum")
    out = xembed.embedding_bag(da.from_array(IDX, chunks=7), numpy_table, OFFSETS, mode="sum")
    np.testing.assert_allclose(compute(out), expected, rtol=2e-6, atol=2e-5)
    out = xembed.embedding_bag(IDX, dask_table, OFFSETS, mode="sum")
    np.testing.assert_allclose(compute(out), expected, rtol=2e-6, atol=2e-5)


def test_bad_values_raise_at_compute() -> None:
    """DASK-CHECKS: the float path's errors, raised when the graph runs."""
    _, dask_table = tables(4)
    bad = IDX.copy()
    bad[30] = N
    out = xembed.embedding_bag(da.from_array(bad, chunks=7), dask_table, da.from_array(OFFSETS, chunks=4))
    with pytest.raises(IndexError, match=f"index {N} at position"):
        compute(out)
    with pytest.raises(IndexError, match=f"index {N} at position"):
        compute(xembed.embedding(da.from_array(bad, chunks=7), dask_table))
    decreasing = OFFSETS.copy()
    decreasing[4] = 2
    out = xembed.embedding_bag(da.from_array(IDX, chunks=7), dask_table, da.from_array(decreasing, chunks=4))
    with pytest.raises(ValueError, match="offsets"):
        compute(out)
    with pytest.raises(NotImplementedError, match="inference"):
        xembed.embedding_bag(da.from_array(IDX, chunks=7), dask_table, OFFSETS, max_norm=1.0)
