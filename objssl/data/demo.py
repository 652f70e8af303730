"""Small real photos shipped inside objssl, for examples and smoke tests that must run offline.

The files live in ``objssl/data/demo/`` (installed as package data); their sources and licences
are listed in ``objssl/data/demo/NOTICE.md``.
"""

from __future__ import annotations

from pathlib import Path

from objssl.errors import DataError

__all__ = ["demo_image_dir", "demo_images"]

_DEMO_DIR = Path(__file__).resolve().with_name("demo")


def demo_image_dir() -> Path:
    """Folder holding the demo photos (``*.jpg``) and their ``NOTICE.md``.

    Raises:
        DataError: the folder is missing (an installation built without package data).
    """
    if not _DEMO_DIR.is_dir():
        raise DataError(
            f"objssl's demo images are missing from this installation (expected {_DEMO_DIR}); "
            "reinstall objssl from a wheel or source tree that includes objssl/data/demo/"
        )
    return _DEMO_DIR


def demo_images() -> list[str]:
    """Sorted absolute paths of the demo photos (8-bit JPEG, long side at most 512 px)."""
    folder = demo_image_dir()
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    if not paths:
        raise DataError(
            f"objssl's demo image folder {folder} holds no .jpg files; reinstall objssl"
        )
    return paths
