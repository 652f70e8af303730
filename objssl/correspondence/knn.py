"""Stage 2b: image kNN by cosine similarity with faiss (``IndexFlatIP`` on L2-normalised features).

As ORL's retrieval notebook (``ORL:tools/coco_knn_image_retrieval.ipynb``): take the top ``k + 1``
and drop the image itself. With duplicate images self need not rank first, so the entry equal to
the query's own index is dropped wherever it is; if it is absent (ties), the last one is.
"""

from __future__ import annotations

import numpy as np

from objssl.errors import ConfigError, UserError

__all__ = ["knn_search", "drop_self"]


def _faiss():
    try:
        import faiss
    except ImportError:
        raise UserError("stage 2b needs faiss: pip install objssl[faiss] (faiss-cpu or faiss-gpu)") from None
    return faiss


def drop_self(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, k+1]`` search results → ``[N, k]`` without the query itself (row i drops the entry
    equal to i, else its last entry)."""
    n, k1 = indices.shape
    is_self = indices == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k1 - 1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    return indices[keep].reshape(n, k1 - 1), scores[keep].reshape(n, k1 - 1)


def knn_search(features: np.ndarray, k: int, *, use_gpu: bool | None = None,
               batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``features [N, D]`` (L2-normalised) → ``(int32 [N, k] neighbours, float32 [N, k] cosines)``.

    ``use_gpu=None``: a faiss GPU index when faiss sees a GPU, else the CPU index.
    """
    faiss = _faiss()
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    if k < 1 or k >= n:
        raise ConfigError(f"stage2.knn_k={k}: needs 1 <= k < number of images ({n})")
    index = faiss.IndexFlatIP(x.shape[1])
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if (use_gpu is None and gpus > 0) or use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(x)
    found_i, found_s = [], []
    for a in range(0, n, batch_size):
        s, i = index.search(x[a:a + batch_size], k + 1)
        found_s.append(s)
        found_i.append(i)
    idx, sc = drop_self(np.concatenate(found_i), np.concatenate(found_s))
    return idx.astype(np.int32), sc.astype(np.float32)
