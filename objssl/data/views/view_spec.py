"""The geometry and colour of one view of a box-aware sample (:class:`BoxViewSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from objssl.data.transforms import ViewAugmentation

__all__ = ["BoxViewSpec"]


@dataclass(frozen=True)
class BoxViewSpec:
    """Geometry and colour of one view.

    Attributes:
        size: output size, ``int`` (square) or ``(height, width)``.
        crop: ``"rrc"`` random resized crop, ``"whole"`` the whole image resized (aspect not kept),
            or ``"same:J"`` view ``J``'s geometry (crop and flip) resized to ``size`` (SoCo*'s view 4:
            view 2's pixels before colour, resized), with this view's own colour draw.
        scale, ratio: random resized crop ranges (area fraction, aspect ratio).
        hflip_p: probability of a horizontal flip.
        color: colour operations (:class:`objssl.data.transforms.ViewAugmentation`; only its colour
            fields are used).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        box_jitter: SoCo's jitter ratio (0: none): x1, y1 move by U(-r, r) times w, h and w, h scale
            by 1 + U(-r, r), each box with probability ``box_jitter_p``, in this view only.
        carries_boxes: whether boxes must be visible in this view (and are output for it).
        cutout_p, cutout_area: SoCo's box cutout (0: none): each valid box of this view, with
            probability ``cutout_p``, gets a zero square of ``U(cutout_area)`` times its area after
            normalisation (:func:`objssl.data.views.box_cutout.cutout_in_boxes`).
    """

    size: int | tuple[int, int] = 224
    crop: str = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    color: ViewAugmentation = field(default_factory=ViewAugmentation)
    interpolation: str = "bilinear"
    box_jitter: float = 0.0
    box_jitter_p: float = 0.5
    carries_boxes: bool = True
    cutout_p: float = 0.0
    cutout_area: tuple[float, float] = (0.1, 0.3)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    def source_view(self) -> int | None:
        """``J`` for ``crop="same:J"``, else None."""
        if self.crop.startswith("same:"):
            return int(self.crop.split(":", 1)[1])
        return None
