import numpy as np
import torch
from PIL import Image

from objssl.correspondence.crops import image_tensor
from objssl.correspondence.embed import embed_boxes
from objssl.correspondence.pairs import pair_count, top_pairs, top_pairs_batched
from objssl.images.decode import load_rgb


def grid_boxes(w, h, g):
    xs, ys = np.linspace(0, w, g + 1), np.linspace(0, h, g + 1)
    return np.array([[xs[i], ys[j], xs[i + 1], ys[j + 1]] for j in range(g) for i in range(g)], dtype=np.float32)


def real_embeddings(backbone, paths, grids):
    items = []
    for path, g in zip(paths, grids):
        img = load_rgb(path)
        items.append((image_tensor(img), torch.from_numpy(grid_boxes(*img.size, g))))
    return list(embed_boxes(backbone.forward_pooled, items, batch_size=7, size=32))


def test_pair_count_is_orls_rule():
    assert [pair_count(b, 0.1) for b in (0, 1, 9, 10, 19, 100)] == [0, 1, 1, 1, 1, 10]


def test_batched_pairs_equal_the_per_pair_reference_on_real_photos(tiny_backbone, demo_paths):
    grids = [3, 4, 2, 5, 1, 3, 4, 2, 3]
    emb = real_embeddings(tiny_backbone, demo_paths, grids)
    emb[4] = emb[4][:0]  # an image without boxes
    neighbours = [[(i + 1) % 9, (i + 3) % 9, (i + 4) % 9] for i in range(9)]
    batched = top_pairs_batched(emb, [[emb[j] for j in row] for row in neighbours], 0.2)
    compared = 0
    for i, row in enumerate(neighbours):
        for s, j in enumerate(row):
            ref_pairs, ref_scores = top_pairs(emb[i], emb[j], 0.2)
            got_pairs, got_scores = batched[i][s]
            expected = pair_count(len(emb[i]), 0.2) if len(emb[j]) else 0
            assert len(got_pairs) == expected
            assert torch.equal(got_pairs, ref_pairs)
            assert torch.allclose(got_scores, ref_scores, atol=1e-5)
            # the reference itself: the best entries of the full cosine matrix
            if expected:
                sim = emb[i] @ emb[j].T
                assert torch.allclose(ref_scores, sim.flatten().sort(descending=True).values[:expected], atol=1e-6)
                compared += 1
    assert compared >= 20


def test_embeddings_do_not_depend_on_how_crops_are_batched(tiny_backbone, demo_paths):
    a = real_embeddings(tiny_backbone, demo_paths[:4], [2, 3, 1, 2])
    items = []
    for path, g in zip(demo_paths[:4], [2, 3, 1, 2]):
        img = load_rgb(path)
        items.append((image_tensor(img), torch.from_numpy(grid_boxes(*img.size, g))))
    b = [next(iter(embed_boxes(tiny_backbone.forward_pooled, [it], batch_size=64, size=32))) for it in items]
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert torch.allclose(x, y, atol=1e-5)
        assert torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-5)


def test_image_without_boxes_or_unreadable_yields_no_rows(tiny_backbone):
    img = image_tensor(Image.fromarray(np.full((40, 50, 3), 120, np.uint8)))
    out = list(embed_boxes(tiny_backbone.forward_pooled,
                           [(None, torch.zeros(0, 4)), (img, torch.tensor([[0.0, 0, 30, 30]])), (img, torch.zeros(0, 4))],
                           batch_size=4, size=32))
    assert [tuple(o.shape) for o in out] == [(0, out[1].shape[1]), (1, out[1].shape[1]), (0, out[1].shape[1])]
