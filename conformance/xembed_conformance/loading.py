"""Import the target under check: ``module``, ``module:attr``, ``path/to/file.py`` or ``path/to/file.py:attr``.

Used by the suite in the checker's process and by each crash-isolation worker process (which loads the target
anew from the same spec string)."""

from __future__ import annotations

import importlib
import importlib.util
import operator
import sys
from pathlib import Path
from typing import Any

from xembed_conformance.checks.quantized import QUANTIZED_OPS

FLOAT_FUNCTIONS = ("embedding", "embedding_bag")


class SetupError(Exception):
    """A checker-side error before or around the run (bad --impl, --backend, --only, xfails entry):
    never a verdict on the target; the command line exits with status 2."""


def offers(target: Any, names: tuple[str, ...]) -> bool:
    return any(callable(getattr(target, f, None)) for f in names)


def load_target(spec: str) -> Any:
    """The object `spec` names; SetupError when it cannot be imported or offers no function the suite checks
    (`embedding`, `embedding_bag`, or one of torch's quantized embedding bag ops)."""
    mod, attr = spec, ""
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and "\\" not in tail and not tail.endswith(".py"):
        mod, attr = head, tail
    try:
        if mod.endswith(".py") or "/" in mod or "\\" in mod:
            obj = _import_file(Path(mod))
        else:
            obj = importlib.import_module(mod)
    except Exception as e:
        msg = f"cannot import the target {mod!r}: {type(e).__name__}: {e}"
        raise SetupError(msg) from e
    if attr:
        try:
            obj = operator.attrgetter(attr)(obj)
        except AttributeError as e:
            msg = f"the target module {mod!r} has no attribute {attr!r}"
            raise SetupError(msg) from e
    if not offers(obj, FLOAT_FUNCTIONS + QUANTIZED_OPS):
        msg = (f"the target {spec!r} has neither `embedding` nor `embedding_bag` (nor one of torch's quantized ops, "
               "`embedding_bag_byte_rowwise_offsets`, ...)")
        raise SetupError(msg)
    return obj


def _import_file(path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        msg = f"no such file: {path}"
        raise FileNotFoundError(msg)
    name = "xembed_conformance_target_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # the file may import its neighbours
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def resolve_impl(impl: str) -> str:
    """A `path/to/file.py[:attr]` target made absolute (worker processes may start elsewhere)."""
    if impl.split(":", maxsplit=1)[0].endswith(".py"):
        head, sep, attr = impl.rpartition(":") if not impl.endswith(".py") else (impl, "", "")
        return str(Path(head).resolve()) + sep + attr
    return impl
