"""ORL stage 2 (RoI embeddings + top pairs): objssl's batched path against ORL's per-pair loop.

    python bench/orl_correspondence.py [--backbone resnet18] [--size 112] [--images 12] [--k 10] [--boxes 10]

Same images, boxes and weights in one run:

* ``per-pair loop`` — ORL's algorithm (``ORL:openselfsup/models/correspondence.py`` with the
  batch-size-1 dataset of ``ORL:openselfsup/datasets/correspondence.py``): for each image, and for
  each of its k neighbours, crop every box from the PIL image and resize it (one by one), run the
  backbone on the query's crops and on the neighbour's crops, cosine matrix, top
  ``max(1, int(0.1 * B))``. Every image is embedded 1 + k times.
* ``objssl batched`` — :mod:`objssl.correspondence`: every image's boxes embedded once (one
  ``roi_align`` per image, crops of several images per backbone batch), then all (image,
  neighbour) pairs from one padded matmul + topk per chunk of images.

Images/s = images / wall time of the whole correspondence (both paths start from decoded-on-demand
files and the same boxes). CPU fp32 always; on a GPU also bf16 autocast. The boxes: the ORL filter
applied to a fixed number of random proposals per photo (``random`` source, >= 96 px).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from objssl.backbones import create_backbone  # noqa: E402
from objssl.correspondence.crops import image_tensor, pil_crops  # noqa: E402
from objssl.correspondence.embed import embed_boxes  # noqa: E402
from objssl.correspondence.pairs import pair_count, top_pairs_batched  # noqa: E402
from objssl.data import demo_images  # noqa: E402
from objssl.images.decode import load_rgb  # noqa: E402
from objssl.proposals import create_source  # noqa: E402
from objssl.proposals.filters import orl_filter  # noqa: E402


def make_images(n: int, folder: str) -> list[str]:
    """``n`` photos: the demo photos, then their mirror images."""
    paths = []
    for i in range(n):
        src = demo_images()[i % 9]
        img = load_rgb(src)
        if (i // 9) % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        paths.append(os.path.join(folder, f"{i:03d}.png"))
        img.save(paths[-1])
    return paths


def make_boxes(paths: list[str], boxes: int) -> list[np.ndarray]:
    source = create_source("random", n=boxes * 4, min_size=96, seed=0)
    out = []
    for p in paths:
        img = np.array(load_rgb(p))
        raw = source(img).boxes
        out.append(orl_filter(raw, (img.shape[1], img.shape[0]))[:boxes].round().numpy())
    return out


def neighbours_of(n: int, k: int) -> np.ndarray:
    return np.array([[(i + 1 + j) % n for j in range(k)] for i in range(n)])


@torch.no_grad()
def per_pair_loop(backbone, paths, boxes, nbrs, size, ratio, device, amp):
    def embed(i):
        crops = pil_crops(load_rgb(paths[i]), boxes[i], size).to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return F.normalize(backbone.forward_pooled(crops).float(), dim=1)

    out = []
    for i in range(len(paths)):
        row = []
        for j in nbrs[i]:
            q, n = embed(i), embed(int(j))  # ORL loads and embeds both images for every pair
            sim = q @ n.T
            scores, flat = sim.flatten().topk(pair_count(len(q), ratio))
            row.append(torch.stack([flat // sim.shape[1], flat % sim.shape[1]], 1).cpu())
        out.append(row)
    return out


@torch.no_grad()
def batched(backbone, paths, boxes, nbrs, size, ratio, device, amp, batch=64, chunk=16):
    items = ((image_tensor(load_rgb(p)), torch.from_numpy(b)) for p, b in zip(paths, boxes))
    emb = list(embed_boxes(backbone.forward_pooled, items, batch_size=batch, size=size, device=device,
                           autocast_dtype=amp))
    out = []
    for a in range(0, len(paths), chunk):
        idx = range(a, min(a + chunk, len(paths)))
        for row in top_pairs_batched([emb[i] for i in idx], [[emb[int(j)] for j in nbrs[i]] for i in idx], ratio,
                                     device=device):
            out.append([p for p, _ in row])
    return out


@torch.no_grad()
def crop_agreement(backbone, paths, boxes, size):
    """Cosine between the embeddings of ORL's crop-then-resize and objssl's roi_align crops."""
    from objssl.correspondence.crops import roi_crops

    cos, others, pixels = [], [], []
    for p, b in zip(paths, boxes):
        img = load_rgb(p)
        crops_orl, crops_ours = pil_crops(img, b, size), roi_crops(image_tensor(img), torch.from_numpy(b), size)
        pixels.append((crops_orl - crops_ours).abs().mean((1, 2, 3)))
        a = F.normalize(backbone.forward_pooled(crops_orl), dim=1)
        r = F.normalize(backbone.forward_pooled(crops_ours), dim=1)
        cos.append((a * r).sum(1))
        sim = a @ a.T  # the scale: how alike two different boxes of the image look to this backbone
        others.append(sim[~torch.eye(len(a), dtype=torch.bool)])
    return torch.cat(cos), torch.cat(others), torch.cat(pixels)


def storage_bytes(n=50, boxes=100, k=10, pairs=10, seed=0):
    """Bytes per image of a COCO-like stage-2 result (640x480, 100 boxes, k x 10 pairs): objssl's
    shards (boxes, pairs, scores, offsets; manifests excluded) against ORL's correspondence JSON."""
    import json

    from objssl.correspondence import format as fmt

    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 400, (n, boxes, 2))
    wh = rng.integers(96, 240, (n, boxes, 2))
    b = np.concatenate([xy, xy + wh], 2).astype(np.float32)
    pi = [[(rng.integers(0, boxes, (pairs, 2)), rng.random(pairs).astype(np.float32)) for _ in range(k)]
          for _ in range(n)]
    nb = rng.integers(0, n, (n, k))
    with tempfile.TemporaryDirectory() as d:
        fmt.write_box_shard(d, 0, 0, list(b), None)
        fmt.write_pair_shard(d, 0, 0, k, pi)
        corr = os.path.join(d, "correspondence")
        ours = sum(os.path.getsize(os.path.join(corr, f)) for f in os.listdir(corr) if f.endswith(".npy"))
    xywh = lambda v: [int(v[0]), int(v[1]), int(v[2] - v[0]), int(v[3] - v[1])]  # noqa: E731
    orl = {"bbox": [[xywh(v) for v in b[i]] for i in range(n)], "knn_image_id": nb.tolist(),
           "knn_bbox_pair": [[[xywh(b[i][q]) + xywh(b[nb[i][s]][t]) for q, t in pi[i][s][0]] for s in range(k)]
                             for i in range(n)]}
    return ours / n, len(json.dumps(orl)) / n


def timed(fn, *args):
    if args[-2].type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args)
    if args[-2].type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=112, help="crop side (ORL: 224)")
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--k", type=int, default=10, help="neighbours per image (ORL: 10)")
    p.add_argument("--boxes", type=int, default=10, help="boxes per image (ORL: up to 100)")
    p.add_argument("--ratio", type=float, default=0.1)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    backbone = create_backbone(args.backbone).eval()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(args.images, tmp)
        boxes = make_boxes(paths, args.boxes)
        nbrs = neighbours_of(len(paths), args.k)
        print(f"backbone={args.backbone} crop={args.size} images={len(paths)} k={args.k} "
              f"boxes/image={np.mean([len(b) for b in boxes]):.1f} torch={torch.__version__} "
              f"threads={torch.get_num_threads()}")
        runs = [("cpu", None)] + ([("cuda", torch.bfloat16)] if torch.cuda.is_available() else [])
        cos, others, pixels = crop_agreement(backbone, paths, boxes, args.size)
        print(f"crop-then-resize vs roi_align, same boxes, {len(cos)} boxes: embedding cosine mean "
              f"{cos.mean():.4f} min {cos.min():.4f} (two different boxes of one image: mean {others.mean():.4f}); "
              f"mean |pixel difference| {pixels.mean():.4f} (normalised units)")
        ours, orl = storage_bytes()
        print(f"storage per image (100 boxes, 10 x 10 pairs): objssl shards {ours:.0f} B, ORL JSON {orl:.0f} B "
              f"({orl / ours:.1f}x)")
        for dev, amp in runs:
            device = torch.device(dev)
            net = backbone.to(device)
            batched(net, paths[:2], boxes[:2], nbrs[:2] % 2, args.size, args.ratio, device, amp)  # warm-up
            ref, t_loop = timed(per_pair_loop, net, paths, boxes, nbrs, args.size, args.ratio, device, amp)
            got, t_bat = timed(batched, net, paths, boxes, nbrs, args.size, args.ratio, device, amp)
            same = sum(torch.equal(a, b) for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
            label = "cpu fp32" if dev == "cpu" else "gpu bf16"
            print(f"{label}: per-pair loop {len(paths) / t_loop:7.2f} images/s | objssl batched "
                  f"{len(paths) / t_bat:7.2f} images/s | speed-up {t_loop / t_bat:5.1f}x | identical pair lists "
                  f"{same}/{len(paths) * args.k} (crop-then-resize vs roi_align)")


if __name__ == "__main__":
    main()
