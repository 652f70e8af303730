"""ORL stage 2: image kNN, per-image RoI embeddings and top RoI pairs per neighbour, stored compactly.

:class:`~objssl.correspondence.store.CorrespondenceStore` reads a finished stage-2 folder; the
writers live in :mod:`objssl.correspondence.format`.
"""

from objssl.correspondence.store import CorrespondenceStore

__all__ = ["CorrespondenceStore"]
