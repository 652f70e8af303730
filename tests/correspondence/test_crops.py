import numpy as np
import torch
import torch.nn.functional as F

from objssl.correspondence.crops import image_tensor, pil_crops, roi_crops
from objssl.images.decode import load_rgb


def test_roi_align_crops_match_orls_crop_then_resize(demo_paths, tiny_backbone):
    img = load_rgb(demo_paths[0])
    w, h = img.size
    boxes = np.array([[0, 0, w, h], [10, 20, 210, 180], [w // 3, h // 4, w - 5, h - 7], [40, 40, 140, 140]],
                     dtype=np.float32)
    ours = roi_crops(image_tensor(img), torch.from_numpy(boxes), 64)
    ref = pil_crops(img, boxes, 64)
    assert ours.shape == ref.shape == (4, 3, 64, 64)
    # normalised pixels (std ~1): the two resamplers differ by a fraction of a grey level on average
    assert (ours - ref).abs().mean() < 0.08
    with torch.no_grad():
        cos = F.cosine_similarity(tiny_backbone.forward_pooled(ours), tiny_backbone.forward_pooled(ref), dim=1)
    assert cos.min() > 0.98


def test_roi_crop_of_a_box_is_that_region():
    a = np.zeros((60, 80, 3), np.uint8)
    a[10:30, 20:60] = 255
    from PIL import Image

    img = Image.fromarray(a)
    crop = roi_crops(image_tensor(img), torch.tensor([[20.0, 10, 60, 30]]), 16)[0]
    white = image_tensor(Image.fromarray(np.full((4, 4, 3), 255, np.uint8)))[:, 0, 0]
    assert torch.allclose(crop[:, 2:-2, 2:-2], white[:, None, None].expand(3, 12, 12), atol=1e-4)
