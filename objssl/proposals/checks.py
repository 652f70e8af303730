"""``check_proposal_source``: the checks a proposal source must pass, for plugin authors' tests.

    from objssl.proposals import check_proposal_source
    def test_my_source():
        check_proposal_source(MySource, threshold=0.3)

It builds the source, runs it on real photos (objssl's bundled demo photos unless ``images`` is
given) and raises :class:`ProposalSourceCheckError` listing every contract it breaks.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch

from objssl.images.decode import load_rgb
from objssl.proposals.base import Proposals, ProposalSource, constructor_params

__all__ = ["check_proposal_source", "ProposalSourceCheckError", "bundled_photos"]


class ProposalSourceCheckError(AssertionError):
    """A proposal source that breaks the contract; the message lists each failed check on a line."""


def bundled_photos() -> list[str]:
    """The demo photos shipped inside objssl (found as package files, without importing objssl.data)."""
    folder = resources.files("objssl") / "data" / "demo"
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".jpg"))


def _varied(params: dict[str, Any], cls: type) -> dict[str, Any] | None:
    """Parameters that differ from ``params`` in one numeric or boolean constructor argument."""
    accepted = constructor_params(cls) or {}
    for name, p in accepted.items():
        value = params.get(name, p.default)
        if isinstance(value, bool):
            return {**params, name: not value}
        if isinstance(value, int):
            return {**params, name: value + 1}
        if isinstance(value, float):
            return {**params, name: value * 1.5 if value else 1.0}
    return None


def check_proposal_source(
    source_cls: type,
    images: Sequence[str] | None = None,
    *,
    other_params: dict[str, Any] | None = None,
    max_images: int = 2,
    **params: Any,
) -> list[str]:
    """Check that ``source_cls(**params)`` keeps the proposal-source contract.

    Checked: ``name``/``version`` set; on each photo the raw output of ``propose`` is ``Proposals``
    (or a tensor/array) of ``float32 [K, 4]`` ``xyxy`` boxes with ``x2 > x1``, ``y2 > y1``, inside
    the image; at least one box over the photos; the same boxes for the same image twice
    (determinism); ``params()`` JSON-serialisable and a ``cache_key`` that is the same for a
    second instance, ``name-version-...``, and different for other parameters (``other_params``,
    else one numeric/boolean argument changed); the source survives ``pickle`` (worker processes)
    with the same key and boxes.

    Args:
        source_cls: the class (a :class:`ProposalSource` subclass).
        images: image files (default: two of objssl's bundled demo photos).
        other_params: parameters that must give another cache key (default: derived).
        max_images: how many of ``images`` to run on.
        **params: constructor arguments.

    Returns:
        the names of the checks that passed (a check that could not be made says why).

    Raises:
        ProposalSourceCheckError: every failed check, one per line.
    """
    failures: list[str] = []
    passed: list[str] = []
    label = getattr(source_cls, "__name__", repr(source_cls))

    def check(ok: bool, what: str, problem: str) -> bool:
        (passed.append(what) if ok else failures.append(f"{what}: {problem}"))
        return ok

    if not (isinstance(source_cls, type) and issubclass(source_cls, ProposalSource)):
        raise ProposalSourceCheckError(f"{label} is not a ProposalSource subclass")
    name, version = getattr(source_cls, "name", ""), getattr(source_cls, "version", "")

    def own(attr: str) -> bool:  # set by the source, not inherited from ProposalSource
        return any(attr in vars(k) for k in source_cls.__mro__ if k is not ProposalSource)

    check(own("name") and isinstance(name, str) and bool(name), "name",
          f"set the class attribute name to the registered name (got {name!r})")
    check(own("version") and isinstance(version, str) and bool(version), "version",
          f"set the class attribute version, e.g. '1', and bump it when the boxes change (got {version!r})")
    source = source_cls(**params)
    paths = list(images) if images is not None else bundled_photos()
    paths = paths[:max_images]
    if not paths:
        raise ProposalSourceCheckError(f"{label}: no images to check on")

    def raw(src: ProposalSource, image: np.ndarray, path: str) -> Any:
        return src.propose(image, path=path) if src.needs_path else src.propose(image)

    total = 0
    first: tuple[np.ndarray, str] | None = None
    for path in paths:
        image = np.asarray(load_rgb(path))
        first = first or (image, path)
        h, w = image.shape[:2]
        where = os.path.basename(path)
        out = raw(source, image, path)
        if not isinstance(out, Proposals):
            out = Proposals(torch.as_tensor(out, dtype=torch.float32))  # raises on a bad shape
        boxes = out.boxes
        total += len(boxes)
        check(boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4,
              f"float32 [K, 4] boxes on {where}", f"got {boxes.dtype} {tuple(boxes.shape)}")
        if len(boxes):
            check(bool(((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()),
                  f"x2 > x1 and y2 > y1 on {where}", "some boxes are empty or inverted (xyxy expected)")
            inside = (boxes[:, :2] >= -1e-3).all() & (boxes[:, 2] <= w + 1e-3).all() & (boxes[:, 3] <= h + 1e-3).all()
            check(bool(inside), f"boxes inside the {w}x{h} image {where}",
                  f"boxes reach {boxes.min().item():.1f} .. x {boxes[:, 2].max().item():.1f}, "
                  f"y {boxes[:, 3].max().item():.1f}")
        again = raw(source, image, path)
        again_boxes = again.boxes if isinstance(again, Proposals) else torch.as_tensor(again, dtype=torch.float32)
        check(torch.equal(boxes, again_boxes.reshape(-1, 4)), f"deterministic on {where}",
              "the same image gave other boxes the second time (seed the source from the image, "
              "see objssl.proposals.image_seed)")
    check(total > 0, "some boxes", f"no boxes on any of {len(paths)} photos")

    try:
        p = source.params()
        json.dumps(p)
        check(True, "params() JSON-serialisable", "")
    except (TypeError, ValueError) as exc:
        check(False, "params() JSON-serialisable", str(exc))
    key = source.cache_key()
    check(key.startswith(f"{name}-{version}-"), "cache_key is name-version-hash", f"got {key!r}")
    check(source_cls(**params).cache_key() == key, "cache_key stable",
          "a second instance with the same parameters has another key")
    varied = other_params if other_params is not None else _varied(params, source_cls)
    if varied is None:
        passed.append("cache_key parameter-sensitive: not checked (no numeric or boolean parameter; "
                      "pass other_params=)")
    else:
        try:
            other = source_cls(**varied).cache_key()
        except (TypeError, ValueError) as exc:
            other = None
            if other_params is not None:
                failures.append(f"other_params {varied}: the constructor rejected them ({exc})")
            else:
                passed.append(f"cache_key parameter-sensitive: not checked ({varied} rejected; pass other_params=)")
        if other is not None:
            check(other != key, "cache_key parameter-sensitive",
                  f"{varied} gives the same key as {params} (return every parameter that changes the "
                  "boxes from params(), or drop params() to use the constructor's arguments)")

    try:
        clone = pickle.loads(pickle.dumps(source))
    except Exception as exc:  # noqa: BLE001 - whatever the source holds
        check(False, "picklable", f"{type(exc).__name__}: {exc} (worker processes receive the "
              "source pickled; drop unpicklable state in __getstate__)")
    else:
        check(clone.cache_key() == key, "picklable", "the unpickled source has another cache key")
        assert first is not None
        image, path = first
        a, b = source(image, path=path).boxes, clone(image, path=path).boxes
        check(torch.equal(a, b), "same boxes after pickling", "the unpickled source gives other boxes")

    if failures:
        raise ProposalSourceCheckError(
            f"proposal source {label} ({name!r}) breaks the contract:\n  " + "\n  ".join(failures)
        )
    return passed
