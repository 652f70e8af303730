"""A stand-in for ``mmcv._ext`` (the compiled ops of full mmcv) when only ``mmcv-lite`` is installed.

mmsegmentation 1.2.2 imports ``mmcv.ops`` at module level in a few places (point_sample, focal
loss, SAN head, mask classification), and ``mmcv.ops`` loads the compiled extension
``mmcv._ext``, which ``mmcv-lite`` does not ship: ``import mmseg.models`` then fails although FCN,
UPerNet, DeepLabV3 and the other plain heads never call a compiled op.

:func:`install` registers a module named ``mmcv._ext`` in ``sys.modules`` **only when the real
extension cannot be found**. Every attribute of the stand-in is a function that raises
:class:`MissingMMCVOpError` when called, naming the op and how to get it, so nothing fails
silently: importing works, calling a compiled op does not. Nothing is written to disk.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable

__all__ = ["MissingMMCVOpError", "install", "is_stand_in"]

_MODULE_NAME = "mmcv._ext"


class MissingMMCVOpError(RuntimeError):
    """A compiled mmcv op was called but only mmcv-lite (no ``mmcv._ext``) is installed."""


def _missing_op(name: str) -> Callable[..., None]:
    def op(*args: object, **kwargs: object) -> None:
        raise MissingMMCVOpError(
            f"mmcv op {name!r} needs the compiled mmcv extension (mmcv._ext), but only mmcv-lite is "
            "installed (objssl registered a stand-in so that mmseg imports). Models that use "
            "mmcv.ops (point_sample, deformable conv, focal loss, ...) need full mmcv==2.1.0 built "
            "from source: MMCV_WITH_OPS=1 pip install --no-build-isolation mmcv==2.1.0"
        )

    op.__name__ = op.__qualname__ = name
    return op


def _module_getattr(name: str) -> Callable[..., None]:
    # Dunder lookups (__path__, __file__, ...) must fail normally, or importlib and inspect
    # would take the stand-in for a package or a file.
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(f"module {_MODULE_NAME!r} has no attribute {name!r}")
    return _missing_op(name)


def is_stand_in(module: types.ModuleType | None = None) -> bool:
    """True if ``mmcv._ext`` (or ``module``) is objssl's stand-in rather than the compiled one."""
    module = module if module is not None else sys.modules.get(_MODULE_NAME)
    return bool(getattr(module, "__objssl_stand_in__", False))


def install() -> bool:
    """Register the stand-in as ``mmcv._ext`` if the real extension is missing.

    Returns:
        True if the stand-in is in place (now or from an earlier call), False if the real
        compiled extension is available (then nothing is changed).
    """
    existing = sys.modules.get(_MODULE_NAME)
    if existing is not None:
        return is_stand_in(existing)
    if importlib.util.find_spec("mmcv") is None:
        raise ImportError("mmcv is not installed: bash transfer/install.sh (or pip install 'objssl[mmseg]')")
    if importlib.util.find_spec(_MODULE_NAME) is not None:
        return False
    module = types.ModuleType(_MODULE_NAME, "objssl's stand-in for mmcv's compiled ops (see objssl.export._mmcv_ext_stub)")
    # A spec with no loader: importlib.util.find_spec("mmcv._ext") answers instead of raising.
    module.__spec__ = importlib.machinery.ModuleSpec(_MODULE_NAME, loader=None, origin="objssl stand-in")
    module.__getattr__ = _module_getattr  # type: ignore[attr-defined]  # PEP 562 module __getattr__
    module.__objssl_stand_in__ = True  # type: ignore[attr-defined]
    sys.modules[_MODULE_NAME] = module
    import mmcv

    mmcv._ext = module  # type: ignore[attr-defined]  # as a real submodule import would set it
    return True
