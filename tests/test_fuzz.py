"""Fuzz test: hypothesis draws valid calls, hands them over in unusual layouts, and breaks them one argument at a
time; a child process (``fuzz_harness``) runs each on every primitive path.  It asserts:

* no crash and no hang (the child's death or silence past ``CASE_TIMEOUT`` fails the test with the case);
* an invalid call raises ValueError / IndexError / TypeError / NotImplementedError naming the broken argument,
  and leaves the weight bit-identical (ERR-ATOMIC);
* a valid call (big-endian, negative or zero strides, subclasses, read-only buffers, every integer dtype, empty
  bags and tables) agrees with a float64 reference on every path, its gradients agree between paths, and
  rewriting the caller's buffers after the forward leaves the pullback unchanged (PULLBACK-SNAPSHOT).

``XEMBED_FUZZ_EXAMPLES`` sets the number of examples per test (default 400: under a minute on 2 cores; try
5000 locally).  The run is derandomized, so CI sees the same cases every time.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_harness import ArraySpec, Case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("XEMBED_FUZZ_EXAMPLES", "400"))
# seconds: a first call may compile kernels; a hang is far longer than that
CASE_TIMEOUT = float(os.environ.get("XEMBED_FUZZ_CASE_TIMEOUT", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
TORCH_INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"]
BENIGN_LAYOUTS = [(), ("big_endian",), ("reversed",), ("subclass",), ("readonly",), ("big_endian", "reversed")]


class Worker:
    """One long-lived child running ``fuzz_harness.serve``; restarted after a crash or a hang.  Its stderr goes
    to a temporary file (a pipe nobody reads could fill up and block it)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker, closed by close()

    def _start(self) -> subprocess.Popen[bytes]:
        tests = str(Path(__file__).parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
        self.stderr.seek(0)
        self.stderr.truncate()
        return subprocess.Popen([sys.executable, "-c", "import fuzz_harness; fuzz_harness.serve()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)

    def run(self, case: Case) -> list[str]:
        if self.proc is None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        payload = pickle.dumps(case)
        proc.stdin.write(b"%d\n" % len(payload) + payload)
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], CASE_TIMEOUT)
        header = proc.stdout.readline() if ready else b""
        if header:
            return list(pickle.loads(proc.stdout.read(int(header))))
        if not ready:
            proc.kill()
        code = proc.wait()
        self._forget()
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace")[-2000:]
        if not ready:
            return [f"hang: no answer in {CASE_TIMEOUT} s"]
        return [f"crash: the worker died with exit code {code}\n{err}"]

    def _forget(self) -> None:
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            proc = self.proc
            self._forget()
            proc.wait(timeout=30)
        self.stderr.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def _assert_behaves(worker: Worker, case: Case) -> None:
    findings = worker.run(case)
    assert not findings, f"{case.fn} on {case.backend} ({case.what or 'valid'}):\n" + "\n".join(findings) + \
        f"\nargs: {case.args!r}"


# --- valid calls ----------------------------------------------------------------------------------------------

@st.composite
def weights(draw: st.DrawFn, min_rows: int = 0) -> np.ndarray:
    n = draw(st.integers(min_rows, 9))
    d = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).standard_normal((n, d)) * 2).astype(dtype)


@st.composite
def indices(draw: st.DrawFn, n_rows: int, shape: tuple[int, ...], backend: str) -> np.ndarray:
    dtype = draw(st.sampled_from(TORCH_INDEX_DTYPES if backend == "torch" else INDEX_DTYPES))
    size = int(np.prod(shape))
    values = draw(st.lists(st.integers(0, n_rows - 1), min_size=size, max_size=size)) if n_rows else [0] * size
    return np.array(values, dtype=dtype).reshape(shape)


def _layout(draw: st.DrawFn, backend: str) -> tuple[str, ...]:
    return draw(st.sampled_from(BENIGN_LAYOUTS)) if backend == "numpy" else ()


@st.composite
def embedding_calls(draw: st.DrawFn) -> Case:
    backend = draw(st.sampled_from(["numpy", "torch"]))
    w = draw(weights())
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0 if w.shape[0] == 0 else 1, 3), min_size=ndim, max_size=ndim)))
    if w.shape[0] == 0:
        shape = (*shape[:-1], 0) if shape else (0,)
    idx = draw(indices(w.shape[0], shape, backend))
    args: dict[str, Any] = {"input": ArraySpec(idx, _layout(draw, backend)),
                            "weight": ArraySpec(w, _layout(draw, backend))}
    if w.shape[0] and draw(st.booleans()):
        args["padding_idx"] = draw(st.integers(-w.shape[0], w.shape[0] - 1))
    if draw(st.booleans()):
        args["max_norm"] = draw(st.floats(0.1, 5.0))
        args["norm_type"] = draw(st.sampled_from([1.0, 2.0, 3.5, float("inf")]))
        args["weight"] = ArraySpec(w, ())  # renormed in place: a writable weight
    options = draw(st.sampled_from([{}, {"scale_grad_by_freq": True}, {"sparse": True}]))
    return Case("embedding", backend, {**args, **options})


@st.composite
def bag_calls(draw: st.DrawFn) -> Case:
    backend = draw(st.sampled_from(["numpy", "torch"]))
    w = draw(weights(min_rows=1))
    mode = draw(st.sampled_from(["sum", "mean", "max", "min", "sqrtn"]))
    layout = draw(st.sampled_from(["2d", "offsets", "last_offset", "lengths"]))
    n_bags = draw(st.integers(0 if layout != "2d" else 1, 4))
    sizes = draw(st.lists(st.integers(0, 4), min_size=n_bags, max_size=n_bags))
    args: dict[str, Any] = {"weight": ArraySpec(w, _layout(draw, backend)), "mode": mode}
    if layout == "2d":
        length = draw(st.integers(0, 4))
        idx = draw(indices(w.shape[0], (n_bags, length), backend))
    else:
        idx = draw(indices(w.shape[0], (sum(sizes),), backend))
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        off_dtype = draw(st.sampled_from(INDEX_DTYPES if backend == "numpy" else TORCH_INDEX_DTYPES))
        if layout == "lengths":
            args["lengths"] = ArraySpec(np.array(sizes, dtype=off_dtype), _layout(draw, backend))
        elif layout == "offsets":
            args["offsets"] = ArraySpec(starts[:-1].astype(off_dtype), _layout(draw, backend))
        else:
            args["offsets"] = ArraySpec(starts.astype(off_dtype), _layout(draw, backend))
            args["include_last_offset"] = True
    args["input"] = ArraySpec(idx, _layout(draw, backend))
    if mode in ("sum", "mean", "sqrtn") and draw(st.booleans()):
        psw = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0]), min_size=idx.size, max_size=idx.size))
        args["per_sample_weights"] = ArraySpec(np.array(psw, dtype=w.dtype).reshape(idx.shape),
                                               _layout(draw, backend))
    if draw(st.booleans()):
        args["padding_idx"] = draw(st.integers(-w.shape[0], w.shape[0] - 1))
    if draw(st.booleans()):
        args["max_norm"] = draw(st.floats(0.1, 5.0))
        args["weight"] = ArraySpec(w, ())
    if mode not in ("max", "min"):
        args.update(draw(st.sampled_from([{}, {"scale_grad_by_freq": True}, {"sparse": True}])))
    return Case("embedding_bag", backend, args)


@FUZZ
@given(case=embedding_calls())
def test_fuzz_valid_embedding(worker, case):
    _assert_behaves(worker, case)


@FUZZ
@given(case=bag_calls())
def test_fuzz_valid_embedding_bag(worker, case):
    _assert_behaves(worker, case)


# --- invalid calls: one argument broken at a time ---------------------------------------------------------------

def _spec(case: Case, name: str) -> ArraySpec:
    spec = case.args[name]
    assert isinstance(spec, ArraySpec)
    return spec


def _with(case: Case, what: str, blame: tuple[str, ...], **args: Any) -> Case:
    return Case(case.fn, case.backend, {**case.args, **args}, invalid=blame, what=what)


HUGE = [-(2**63), -1, 2**31, 2**62, 2**63 - 1]


@st.composite
def broken_calls(draw: st.DrawFn) -> Case:
    case = draw(st.one_of(embedding_calls(), bag_calls()))
    idx, w = _spec(case, "input").base, _spec(case, "weight").base
    n = w.shape[0]
    options: list[Case] = [
        _with(case, "float input", ("input",), input=ArraySpec(idx.astype(np.float32))),
        _with(case, "bool input", ("input",), input=ArraySpec(idx.astype(bool))),
        _with(case, "integer weight", ("weight",), weight=ArraySpec(w.astype(np.int32))),
        _with(case, "1-D weight", ("weight",), weight=ArraySpec(w.reshape(-1))),
        _with(case, "padding_idx out of range", ("padding_idx",), padding_idx=draw(st.sampled_from([n, -n - 1]))),
        _with(case, "padding_idx not an int", ("padding_idx",), padding_idx=draw(st.sampled_from([1.0, True]))),
        _with(case, "max_norm not > 0", ("max_norm",),
              max_norm=draw(st.sampled_from([0.0, -1.0, float("nan"), 10**400, True]))),
        _with(case, "norm_type not > 0", ("norm_type",), max_norm=1.0,
              norm_type=draw(st.sampled_from([0.0, -2.0, float("nan"), 10**400]))),
        _with(case, "flag not a bool", ("scale_grad_by_freq",), scale_grad_by_freq=draw(st.sampled_from([2, "yes"]))),
    ]
    if idx.size:
        bad = np.array(idx, dtype=np.int64).reshape(-1)
        pos = draw(st.integers(0, bad.size - 1))
        value = draw(st.sampled_from([n, n + 3, *HUGE]))
        if value < 0 or value >= n:
            bad[pos] = value
            options.append(_with(case, f"index {value}", ("input",), input=ArraySpec(bad.reshape(idx.shape))))
        if case.backend == "numpy":
            big = idx.astype(np.uint64).reshape(-1)
            big[pos] = 2**64 - 1 - draw(st.integers(0, 5))
            options.append(_with(case, "uint64 index beyond int64", ("input",),
                                 input=ArraySpec(big.reshape(idx.shape))))
    if case.backend == "numpy":
        options.append(_with(case, "masked input", ("input",), input=ArraySpec(idx, ("masked",))))
        options.append(_with(case, "masked weight", ("weight",), weight=ArraySpec(w, ("masked",))))
        options.append(_with(case, "read-only weight with max_norm", ("weight",),
                             weight=ArraySpec(w, (draw(st.sampled_from(["readonly", "broadcast"])),)), max_norm=0.5))
    else:
        options.append(_with(case, "torch uint64 input", ("input",), input=ArraySpec(idx.astype(np.uint64))))
    if case.fn == "embedding_bag":
        options += _broken_bag_options(draw, case)
    return draw(st.sampled_from(options))


def _broken_bag_options(draw: st.DrawFn, case: Case) -> list[Case]:
    a = case.args
    idx = _spec(case, "input").base
    n = idx.size
    opts = [
        _with(case, "unknown mode", ("mode",), mode=draw(st.sampled_from(["SUM", "median", 1]))),
        _with(case, "psw of another shape", ("per_sample_weights",),
              per_sample_weights=ArraySpec(np.ones(n + 1, dtype=_spec(case, "weight").base.dtype))),
        _with(case, "psw of another dtype", ("per_sample_weights",),
              per_sample_weights=ArraySpec(np.ones(idx.shape, dtype=np.float16))),
        _with(case, "max with sparse", ("sparse", "mode"), mode="max", sparse=True, scale_grad_by_freq=False,
              per_sample_weights=None),
        _with(case, "sparse with scale_grad_by_freq", ("sparse", "scale_grad_by_freq"), mode="sum",
              sparse=True, scale_grad_by_freq=True),
        _with(case, "3-D input", ("input",), input=ArraySpec(idx.reshape((1, 1, -1))),
              offsets=None, lengths=None, include_last_offset=False, per_sample_weights=None),
    ]
    if "lengths" in a:
        lengths = _spec(case, "lengths").base.astype(np.int64)
        wrap = [2**62] * 3 + [2**62 + n] if n else [2**63 - 1, 1]
        opts += [
            _with(case, "lengths that wrap int64", ("lengths",), lengths=ArraySpec(np.array(wrap, dtype=np.int64))),
            _with(case, "lengths sum off by one", ("lengths",), lengths=ArraySpec(np.append(lengths, 1))),
            _with(case, "negative length", ("lengths",), lengths=ArraySpec(np.append(lengths, [-1, 1]))),
            _with(case, "lengths and offsets", ("offsets", "lengths"), offsets=ArraySpec(np.zeros(1, np.int64))),
        ]
        if case.backend == "numpy":
            opts.append(_with(case, "uint64 lengths beyond int64", ("lengths",),
                              lengths=ArraySpec(np.array([2**64 - 1, n + 1], dtype=np.uint64))))
    elif "offsets" in a:
        offs = _spec(case, "offsets").base.astype(np.int64)
        opts.append(_with(case, "offsets[0] != 0", ("offsets",), offsets=ArraySpec(np.append([1], offs))))
        opts.append(_with(case, "offsets end beyond input", ("offsets",),
                          offsets=ArraySpec(np.append(offs, [n + 1]))))
        opts.append(_with(case, "decreasing offsets", ("offsets",), offsets=ArraySpec(np.append(offs, [n + 2, 1]))))
        if case.backend == "numpy":
            opts.append(_with(case, "uint64 offsets beyond int64", ("offsets",),
                              offsets=ArraySpec(np.array([*offs.tolist(), 2**64 - 1], dtype=np.uint64))))
    return opts


@FUZZ
@given(case=broken_calls())
def test_fuzz_invalid_calls_raise_typed_errors(worker, case):
    _assert_behaves(worker, case)


def test_fuzz_worker_reports_crash_and_hang(monkeypatch):
    """The harness itself: a child that dies or goes silent is a finding, and the next case gets a new child."""
    w = Worker()
    try:
        crash = w.run(Case("_selftest_crash", "numpy", {}))
        assert len(crash) == 1
        assert crash[0].startswith("crash: the worker died with exit code -6")
        monkeypatch.setattr(sys.modules[__name__], "CASE_TIMEOUT", 2.0)
        assert w.run(Case("_selftest_hang", "numpy", {})) == ["hang: no answer in 2.0 s"]
        monkeypatch.undo()  # a fresh child needs its start-up time
        ok = Case("embedding", "numpy", {"input": ArraySpec(np.array([1])), "weight": ArraySpec(np.ones((2, 3)))})
        assert w.run(ok) == []
    finally:
        w.close()
