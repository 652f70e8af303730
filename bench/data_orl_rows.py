"""ORL stage 3's rows of :mod:`bench.data_throughput`: a stage-2 folder over the demo photos (random
boxes, the next two photos as neighbours, random box pairs; written with
:mod:`objssl.correspondence.format`'s writers) and the loader-side / device-side costs of
:class:`objssl.data.neighbour_pairs.NeighbourPairDataset` with :class:`objssl.data.roi_pair_views.RoIPairViews`
made both ways. Both images of a device-mode sample are always decoded at full size (no reduced
decode, no bytes path), so those columns are NaN.
"""

from __future__ import annotations

import math

import numpy as np

BOXES, NEIGHBOURS, PAIRS = 8, 2, 4


def write_demo_stage2(folder: str, paths: list[str], seed: int = 0) -> str:
    """A stage-2 folder for ``paths``: ``BOXES`` random boxes per image (a fifth to a half of each side),
    neighbours ``i+1, i+2``, ``PAIRS`` random box-index pairs per neighbour."""
    from objssl.correspondence import format as fmt
    from objssl.data import image_size

    rng = np.random.default_rng(seed)
    boxes = []
    for path in paths:
        w, h = image_size(path)
        bw, bh = rng.uniform(0.2, 0.5, BOXES) * w, rng.uniform(0.2, 0.5, BOXES) * h
        x0, y0 = rng.uniform(0, 1, BOXES) * (w - bw), rng.uniform(0, 1, BOXES) * (h - bh)
        boxes.append(np.stack([x0, y0, x0 + bw, y0 + bh], 1).astype(np.float32))
    n = len(paths)
    neighbours = np.array([[(i + s) % n for s in range(1, NEIGHBOURS + 1)] for i in range(n)], dtype=np.int32)
    fmt.write_knn(folder, paths, neighbours, np.full(neighbours.shape, 0.5, dtype=np.float32))
    fmt.write_box_shard(folder, 0, 0, boxes, None)
    pairs = [[(rng.integers(0, BOXES, (PAIRS, 2)), np.linspace(1.0, 0.5, PAIRS)) for _ in range(NEIGHBOURS)]
             for _ in range(n)]
    fmt.write_pair_shard(folder, 0, 0, NEIGHBOURS, pairs)
    fmt.write_meta(folder, k=NEIGHBOURS, num_images=n, shards=[(0, n)])
    return folder


def measure_orl(paths: list[str], folder: str, args, per_sample, collate_ms, device_ms) -> dict[str, float]:
    """The row of :func:`bench.data_throughput.measure_method` for ORL stage 3 (same helpers)."""
    import torch

    from objssl.correspondence.store import CorrespondenceStore
    from objssl.data.neighbour_pairs import NeighbourPairDataset
    from objssl.data.roi_pair_events import collate_neighbour_pairs
    from objssl.data.roi_pair_views import RoIPairViews

    store = CorrespondenceStore.open(folder)
    data = {where: NeighbourPairDataset(paths, store, RoIPairViews(image_size=args.image_size, augment_on=where))
            for where in ("loader", "device")}
    r: dict[str, float] = {"dev_red": math.nan, "dev_bytes": math.nan}
    r["loader"], samples = per_sample(data["loader"], args.samples)
    r["coll_l"] = collate_ms(collate_neighbour_pairs, samples)
    r["dev_full"], samples = per_sample(data["device"], args.samples)
    r["coll_d"] = collate_ms(collate_neighbour_pairs, samples)
    r["ratio"] = (r["dev_full"] + r["coll_d"]) / (r["loader"] + r["coll_l"])
    r["ratio_red"] = math.nan
    dev = data["device"]
    batch = collate_neighbour_pairs([dev[(i % len(dev), i)] for i in range(args.batch)])
    dtype = torch.bfloat16 if (args.bf16 and args.device == "cuda") else torch.float32
    r["device_ms"] = device_ms(dev.transform.device_views, batch, args.device, dtype, args.repeats)
    return r
