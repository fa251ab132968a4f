"""Crash isolation: every target call runs in a worker process that the checker restarts.

A target that segfaults, aborts or hangs (a kernel writer's daily bread) becomes a failing check
with its case and repro; the run goes on with a fresh worker and the report is written.  The worker
is spawned (fork is not used: forking a process that has run torch can deadlock).  A target object
that cannot be pickled runs in the checker's own process instead (``InProcess``; the report says so).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
from typing import Any

from xembed_conformance.backends import Backend, BackendFactory
from xembed_conformance.cases import Case
from xembed_conformance.execute import Target, dispatch
from xembed_conformance.loading import load_target


class InProcess:
    """Runs the calls in the checker's process (``--no-isolation``, or an unpicklable target)."""

    isolated = False

    def __init__(self, target: Target):
        self.target = target

    def call(self, kind: str, case: Case, **kw: Any) -> dict[str, Any]:
        return dispatch(self.target, kind, case, kw)

    def close(self) -> None:
        pass


class Worker:
    """A spawned worker process running the calls; restarted after a crash or a timeout."""

    isolated = True

    def __init__(self, target_ref: str | bytes, factory: BackendFactory, device: str | None,
                 grad_mode: str | None, timeout: float = 300.0):
        self.args = (target_ref, factory, device, grad_mode)
        self.timeout = timeout
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()

    def call(self, kind: str, case: Case, **kw: Any) -> dict[str, Any]:
        if self.proc is not None and not self.proc.is_alive():
            self.proc = None
        if self.proc is None:
            self._start()
        try:
            self.conn.send((kind, case, kw))
        except (BrokenPipeError, OSError):
            return self._crashed()
        if self.conn.poll(self.timeout):
            try:
                res: dict[str, Any] = self.conn.recv()
            except (EOFError, OSError):
                return self._crashed()
            if "worker_error" in res:
                raise RuntimeError(res["worker_error"])
            return res
        self.proc.kill()
        self.proc.join()
        self.proc = None
        self.restarts += 1
        return {"crashed": f"no answer within {self.timeout:g} s (hang)"}

    def _crashed(self) -> dict[str, Any]:
        self.proc.join(10)
        code = self.proc.exitcode
        self.proc = None
        self.restarts += 1  # the next call starts a fresh worker
        return {"crashed": f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"}

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.close()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.proc = None


def _worker_main(conn: Any, target_ref: str | bytes, factory: BackendFactory, device: str | None,
                 grad_mode: str | None) -> None:
    try:
        obj = load_target(target_ref) if isinstance(target_ref, str) else pickle.loads(target_ref)
        be: Backend = factory(device)
    except BaseException as e:  # noqa: BLE001 - reported to the checker as its own error
        setup_error = f"worker could not load the target: {type(e).__name__}: {e}"
    else:
        setup_error = ""
    while True:
        try:
            kind, case, kw = conn.recv()
        except (EOFError, OSError):
            return
        if setup_error:
            conn.send({"worker_error": setup_error})
            continue
        try:
            res = dispatch(Target(obj, be, grad_mode), kind, case, kw)
        except Exception as e:  # noqa: BLE001 - the adapter or the checker failed, not the target
            res = {"worker_error": f"{type(e).__name__}: {e}"}
        conn.send(res)
