"""The proposal-source contract: an RGB image in, ``xyxy`` boxes out.

A proposal source is a callable object with a ``name``, a ``version`` and parameters; the three
together form its :meth:`ProposalSource.cache_key`, so a proposal cache built by one source with
one set of parameters is never mistaken for another. Sources are registered in
:data:`objssl.registry.PROPOSALS` (built-ins) or declared by installed packages in the entry-point
group ``objssl.proposals`` (plugins)::

    [project.entry-points."objssl.proposals"]
    my_source = "my_package:MySource"

and are created by name with ``PROPOSALS.build(name, **params)`` (or
:func:`objssl.proposals.create_source`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from objssl.errors import DataError

__all__ = [
    "Proposals", "ProposalSource", "MissingProposalsError", "InvalidBoxesError", "check_image",
    "image_seed", "stable_hash", "constructor_params",
]


class MissingProposalsError(KeyError):
    """A proposal file or cache has no entry for an image."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


class InvalidBoxesError(DataError):
    """Boxes that break the :class:`Proposals` contract (shape, non-finite values, ``x2 < x1``)."""


@dataclass
class Proposals:
    """Region proposals of one image.

    Attributes:
        boxes: ``float32 [K, 4]``, ``x1, y1, x2, y2`` in pixel coordinates of the image the source
            was given (``0 <= x1 <= x2 <= W``, ``0 <= y1 <= y2 <= H``).
        scores: ``float32 [K]`` or None (selective search has no scores; its order is its ranking).

    Raises:
        InvalidBoxesError: boxes not of shape ``[K, 4]``, with NaN/inf values, or inverted
            (``x2 < x1`` or ``y2 < y1``; the first such box is named). Bounds are not checked
            here: :meth:`ProposalSource.__call__` clips boxes to the image.
    """

    boxes: torch.Tensor
    scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        boxes = torch.as_tensor(self.boxes, dtype=torch.float32)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidBoxesError(f"Proposals.boxes must have shape [K, 4], got {tuple(boxes.shape)}")
        bad = ~torch.isfinite(boxes).all(dim=1)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise InvalidBoxesError(f"box {i} of {len(boxes)} is not finite: {boxes[i].tolist()}")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            i = int(inverted.nonzero()[0])
            raise InvalidBoxesError(
                f"box {i} of {len(boxes)} is inverted (x2 < x1 or y2 < y1; boxes are x1, y1, x2, y2): "
                f"{boxes[i].tolist()}"
            )
        self.boxes = boxes
        if self.scores is not None:
            scores = torch.as_tensor(self.scores, dtype=torch.float32).reshape(-1)
            if scores.shape[0] != boxes.shape[0]:
                raise InvalidBoxesError(
                    f"Proposals.scores has {scores.shape[0]} entries for {boxes.shape[0]} boxes"
                )
            self.scores = scores

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def scaled(self, sx: float, sy: float) -> Proposals:
        """The same proposals with x multiplied by ``sx`` and y by ``sy``."""
        factor = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        return Proposals(self.boxes * factor, self.scores)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of ``obj`` as canonical JSON (sorted keys): the same in every process and run."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def image_seed(image: np.ndarray, seed: int | None = None) -> int:
    """A 63-bit seed: ``seed`` itself if given, else a stable hash of the image's bytes and shape.

    Hashing the pixels (not ``id`` or Python's salted ``hash``) makes a random source give the same
    boxes for the same image in any process, which keeps caches reproducible.
    """
    if seed is not None:
        return int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=8)
    digest.update(repr(image.shape).encode())
    return int.from_bytes(digest.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def check_image(image: Any, where: str = "proposal source") -> np.ndarray:
    """Validate an ``H×W×3 uint8`` RGB array; raises ValueError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{where}: expected a numpy array H×W×3 uint8 (RGB), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: expected an H×W×3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{where}: empty image of shape {image.shape}")
    return image


def constructor_params(cls: type) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters of ``cls(...)`` by name (``self`` left out), or None when its
    constructor takes ``**kwargs`` (any name may be valid)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name: p for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}


class ProposalSource:
    """Base class of proposal sources.

    Subclasses set the class attributes ``name`` and ``version`` (bump the version whenever the
    output for the same parameters changes, so stale caches are detected) and implement
    :meth:`propose`. ``__call__`` validates the image and the result.

    The parameters that change the output form the cache key. By default they are the arguments
    the constructor was called with, defaults filled in (recorded by ``__new__``, so a subclass
    needs no code for it); a source that takes arguments which do not change its boxes (threads,
    a logger) overrides :meth:`params` to return only those that do.

    Sources that look boxes up by file (``precomputed``) set ``needs_path = True`` and receive the
    image's path as the ``path`` keyword.
    """

    name: str = "base"
    version: str = "0"
    needs_path: bool = False

    def __new__(cls, *args: Any, **kwargs: Any) -> ProposalSource:
        self = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        except TypeError:  # wrong arguments (the constructor says so), or unpickling (no arguments)
            return self
        bound.apply_defaults()
        recorded: dict[str, Any] = {}
        for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
            value = bound.arguments[name]
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(value)
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    recorded[name] = list(value)
            else:
                recorded[name] = value
        self.__dict__["_constructor_args"] = recorded
        return self

    def params(self) -> dict[str, Any]:
        """The parameters that change the output (JSON-serialisable). Default: the constructor's
        arguments, defaults filled in."""
        return dict(self.__dict__.get("_constructor_args", {}))

    def cache_key(self) -> str:
        """``"<name>-<version>-<hash of sorted params>"``, stable across processes and runs."""
        return f"{self.name}-{self.version}-{stable_hash(self.params(), 12)}"

    def propose(self, image: np.ndarray, *, path: str | None = None) -> Proposals:
        """Proposals for a validated ``H×W×3 uint8`` RGB image. Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement propose(image)")

    def __call__(self, image: np.ndarray, *, path: str | None = None) -> Proposals:
        """Proposals for ``image`` (``H×W×3 uint8`` RGB); boxes are clipped to the image.

        ``path`` (the image's file) is passed on to sources with ``needs_path`` and named in errors.

        Raises:
            InvalidBoxesError: the source returned boxes that break the :class:`Proposals`
                contract; the message names the source and the image.
        """
        check_image(image, f"proposal source {self.name!r}")
        h, w = image.shape[:2]
        try:
            out = self.propose(image, path=path) if self.needs_path else self.propose(image)
            if not isinstance(out, Proposals):
                out = Proposals(torch.as_tensor(out, dtype=torch.float32))
        except InvalidBoxesError as exc:
            where = f"image {path}" if path else f"an image of {w}x{h} px"
            raise InvalidBoxesError(f"proposal source {self.name!r} returned invalid boxes for {where}: {exc}") from None
        boxes = out.boxes.clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        return Proposals(boxes, out.scores)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params().items()))
        return f"{type(self).__name__}({args})"
