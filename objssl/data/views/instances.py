"""What UniVIP's instance crops are cut from: the original image on a fixed canvas, with its boxes.

The K instances are crops of the *original* image (not of the scene views) resized to 96×96. Cropping
them here, image by image, would make the loader do K resizes per image; instead the loader sends the
image resized (aspect not kept) to a fixed ``size × size`` canvas, the K boxes scaled onto it and a
flip per instance, and the instance term cuts all crops of a batch with one
``torchvision.ops.roi_align`` on the training device (:func:`objssl.objectives.univip_instances.crop_instances`).

Colour is drawn here, per image, with the same torchvision ops as the views (view 1's family): two
images of a batch get independent draws (the reproduction drew once per batch); the K instances of
one image share their image's draw. The canvas stays uint8 (4× less to send than float), and
normalisation happens after the crop, on the device.

With views made on the device (``augment_on="device"``) the canvas is made there too: :meth:`InstanceCanvas.draw`
makes the same draws from the image size alone and sends them as ``canvas_params`` (the whole image as
the crop), and :meth:`InstanceCanvas.device_view` is how the device resizes and colours it (float, in
``[0, 1]``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from objssl.data.device.params import ViewParams, draw_colour
from objssl.data.device.pipeline import DeviceView
from objssl.data.transforms import ViewAugmentation, blur_kernel_size, photometric_transform

__all__ = ["InstanceCanvas", "INSTANCE_FIELDS"]

#: ``sample["instances"]``: canvas ``uint8 [3, S, S]``, boxes ``float [K, 4]`` (canvas pixels), flips ``bool [K]``
INSTANCE_FIELDS = ("canvas", "boxes", "flips")


class InstanceCanvas:
    """``(uint8 image [3, H, W], boxes [K, 4] in image pixels, mask [K]) -> {"instances": {canvas, boxes, flips}}``.

    Args:
        size: canvas side ``S`` in pixels.
        color: the colour operations (only the colour fields are used); the blur kernel is that of a
            224-pixel view (23 px), sigma in canvas pixels.
        hflip_p: probability of flipping each instance crop (drawn per instance).
    """

    def __init__(self, size: int, color: ViewAugmentation, hflip_p: float = 0.5) -> None:
        if size < 8:
            raise ValueError(f"InstanceCanvas: size must be >= 8, got {size}")
        self.size, self.hflip_p = int(size), float(hflip_p)
        self.color = replace(color, size=224)
        self._colour = photometric_transform(self.color, normalize=False, to_float=False)

    def device_view(self) -> DeviceView:
        """How the training device makes the canvas: the whole image resized bilinear to ``S × S``,
        this colour draw (blur kernel of a 224-px view), not normalised."""
        return DeviceView((self.size, self.size), "bilinear", blur_kernel=blur_kernel_size(224), normalize=False)

    def draw(self, hw: tuple[int, int], boxes: Tensor, mask: Tensor) -> dict[str, dict[str, Tensor]]:
        """:meth:`__call__`'s draws from the image size ``(H, W)`` alone: ``canvas_params`` (the whole
        image as the crop, this canvas's colour) in place of ``canvas``."""
        H, W = hw
        colour = draw_colour(self.color)
        out = self._boxes_and_flips(hw, boxes, mask)
        out["canvas_params"] = ViewParams((0.0, 0.0, float(W), float(H)), False, colour).as_tensors()
        return {"instances": out}

    def _boxes_and_flips(self, hw: tuple[int, int], boxes: Tensor, mask: Tensor) -> dict[str, Tensor]:
        H, W = hw
        S = self.size
        scale = torch.tensor([S / W, S / H, S / W, S / H])
        flips = torch.rand(len(boxes)) < self.hflip_p
        return {"boxes": (boxes.float() * scale).clamp(0, S) * mask[:, None], "flips": flips & mask}

    def __call__(self, img: Tensor, boxes: Tensor, mask: Tensor) -> dict[str, Tensor]:
        H, W = (int(s) for s in img.shape[-2:])
        S = self.size
        # bilinear, uint8: no overshoot to clamp before the colour ops
        canvas = TF.resize(img, [S, S], interpolation=InterpolationMode.BILINEAR, antialias=True)
        canvas = self._colour(tv_tensors.Image(canvas)).as_subclass(Tensor)
        return {"instances": {"canvas": canvas, **self._boxes_and_flips((H, W), boxes, mask)}}

    def __repr__(self) -> str:
        return f"InstanceCanvas(size={self.size}, hflip_p={self.hflip_p})"
