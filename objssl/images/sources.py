"""Where training images come from: a folder, a list file, a COCO json, a single image, or tar shards.

:func:`list_images` turns any of these into a list of absolute image paths in a deterministic
order; :func:`describe_source` gives a one-line summary for logs. Problems with the source
itself (missing, empty, malformed) raise :class:`objssl.errors.DataError` naming the path;
whether each file decodes is checked later, by :func:`objssl.images.decode.load_rgb`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from objssl.errors import DataError
from objssl.images.tar_shards import (
    SHARD_EXTENSION,
    expand_shard_pattern,
    is_shard_pattern,
    member_path,
    shard_members,
)

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "list_images", "describe_source"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LIST_EXTENSIONS = (".txt", ".lst")
_SHOW_MISSING = 3  # how many missing entries an error message names


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _kind(path: str) -> str:
    """``"folder"``, ``"list"``, ``"coco"``, ``"image"`` or ``"shards"``; DataError for anything else."""
    if not os.path.exists(path) and is_shard_pattern(path):
        return "shards"
    if not os.path.exists(path):
        raise DataError(f"data path does not exist: {path}")
    if os.path.isdir(path):
        return "shards" if _shards_in_folder(path) else "folder"
    lower = path.lower()
    if lower.endswith(SHARD_EXTENSION):
        return "shards"
    if lower.endswith(LIST_EXTENSIONS):
        return "shard list" if _list_entries(path)[0].endswith(SHARD_EXTENSION) else "list"
    if lower.endswith(".json"):
        return "coco"
    if _is_image_name(lower):
        return "image"
    raise DataError(
        f"unsupported data source {path}: expected a folder of images, a list file "
        f"({', '.join(LIST_EXTENSIONS)}), a COCO .json, an image file, or tar shards (a .tar, a brace "
        "pattern such as train-{000000..000009}.tar, a folder of .tar files)"
    )


def _scan_folder(root: str) -> list[str]:
    """All image files under ``root`` (recursive, following links once), hidden entries skipped."""
    found: list[str] = []
    seen_dirs: set[str] = set()  # real paths, so a symlink loop is walked only once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(
            os.path.join(dirpath, f)
            for f in filenames
            if not f.startswith(".") and _is_image_name(f)
        )
    if not found:
        raise DataError(
            f"no images found under {root} (looked for {', '.join(IMAGE_EXTENSIONS)}, any case)"
        )
    return sorted(found)


def _keep_existing(paths: Sequence[str], source: str, roots: Sequence[str]) -> list[str]:
    """Drop entries whose file is missing (with a warning); DataError if none exists."""
    exists = [os.path.isfile(p) for p in paths]
    present = [p for p, ok in zip(paths, exists) if ok]
    missing = [p for p, ok in zip(paths, exists) if not ok]
    if not present:
        more = ", ..." if len(missing) > _SHOW_MISSING else ""
        shown = ", ".join(missing[:_SHOW_MISSING]) + more
        raise DataError(
            f"none of the {len(paths)} images listed in {source} exist "
            f"(resolved against {', '.join(roots)}): {shown}"
        )
    if missing:
        log.warning(
            "%d of %d images listed in %s are missing and were dropped (first: %s)",
            len(missing), len(paths), source, missing[0],
        )
    return present


def _resolve(entry: str, root: str) -> str:
    return os.path.abspath(os.path.join(root, os.path.expanduser(entry)))


def _list_entries(path: str) -> list[str]:
    """The entries of a list file: one per line, ``#`` comment lines and blank lines ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"list file {path} is not UTF-8 text ({exc.reason})") from None
    entries = [s.strip() for s in lines]
    entries = [s for s in entries if s and not s.startswith("#")]
    if not entries:
        raise DataError(f"list file {path} has no entries (only blank lines or # comments)")
    return entries


def _read_list(path: str, image_root: str | None) -> list[str]:
    """Paths from a list file of images."""
    entries = _list_entries(path)
    root = image_root if image_root is not None else os.path.dirname(path)
    paths = [_resolve(e, root) for e in entries]
    return _keep_existing(paths, f"list file {path}", [root])


def _coco_file_names(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            data: Any = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{path} is not a COCO json: it has no 'images' list")
    if not images:
        raise DataError(f"COCO json {path} has an empty 'images' list")
    names = []
    for i, entry in enumerate(images):
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise DataError(f"COCO json {path}: images[{i}] has no 'file_name' string")
        names.append(name)
    return names


def _coco_roots(path: str) -> list[str]:
    """Candidate image roots for a COCO json, in order of preference (see :func:`list_images`)."""
    folder = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    split = stem.rsplit("_", 1)[-1]  # instances_train2017 -> train2017
    candidates = [folder, os.path.join(folder, "..", split), os.path.join(folder, "..", "images")]
    roots: list[str] = []
    for c in candidates:
        c = os.path.abspath(c)
        if c not in roots:
            roots.append(c)
    return roots


def _read_coco(path: str, image_root: str | None) -> tuple[list[str], str]:
    """Image paths of a COCO json and the root they were resolved against."""
    names = _coco_file_names(path)
    if image_root is not None:
        root = image_root
    else:
        roots = _coco_roots(path)
        # the first root holding the first image; if none does, report against all of them
        root = next((r for r in roots if os.path.isfile(_resolve(names[0], r))), None)
        if root is None:
            raise DataError(
                f"cannot find the images of COCO json {path}: its first file {names[0]!r} is in "
                f"none of {', '.join(roots)} (pass image_root)"
            )
    paths = [_resolve(n, root) for n in names]
    return _keep_existing(paths, f"COCO json {path}", [root]), root


def _shards_in_folder(folder: str) -> list[str]:
    """The ``.tar`` files directly in ``folder`` (sorted), if it holds no image files there."""
    names = [n for n in os.listdir(folder) if not n.startswith(".")]
    if any(_is_image_name(n) for n in names):
        return []
    return sorted(os.path.join(folder, n) for n in names
                  if n.lower().endswith(SHARD_EXTENSION) and os.path.isfile(os.path.join(folder, n)))


def _shard_files(src: str, kind: str, image_root: str | None) -> list[str]:
    """The shards of a shard source, in order; DataError for a missing, repeated or non-tar entry."""
    if kind == "shard list":
        root = image_root if image_root is not None else os.path.dirname(src)
        shards = [_resolve(e, root) for e in _list_entries(src)]
        odd = [s for s in shards if not s.lower().endswith(SHARD_EXTENSION)]
        if odd:
            raise DataError(f"shard list {src}: entry {odd[0]} is not a {SHARD_EXTENSION} shard "
                            "(a list file holds either images or shards)")
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing:
            raise DataError(f"shard list {src}: {len(missing)} of its {len(shards)} shards do not "
                            f"exist (first: {missing[0]})")
    elif os.path.isdir(src):
        shards = _shards_in_folder(src)
    elif os.path.isfile(src):
        shards = [src]
    else:
        shards = expand_shard_pattern(src)
    seen: set[str] = set()
    for s in shards:
        if s in seen:
            raise DataError(f"shard {s} is listed twice in {src}")
        seen.add(s)
    return shards


def _read_shards(shards: list[str], src: str) -> list[str]:
    """The images of ``shards`` (``<shard>/<key>``), shard by shard, in tar order."""
    paths = [member_path(s, m.key) for s in shards for m in shard_members(s)]
    if not paths:
        raise DataError(f"the {len(shards)} tar shards of {src} hold no images "
                        f"(members named <key>.<ext>, ext one of {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def _list(path: PathLike, image_root: PathLike | None) -> tuple[str, list[str], str | None]:
    src = os.path.abspath(os.path.expanduser(os.fspath(path)))
    root = None
    if image_root is not None:
        root = os.path.abspath(os.path.expanduser(os.fspath(image_root)))
    if root is not None and not os.path.isdir(root):
        raise DataError(f"image_root is not a folder: {root}")
    kind = _kind(src)
    if kind in ("shards", "shard list"):
        shards = _shard_files(src, kind, root)
        return kind, _read_shards(shards, src), f"{len(shards)} shard{'s' if len(shards) != 1 else ''}"
    if kind == "folder":
        return kind, _scan_folder(src), None
    if kind == "list":
        return kind, _read_list(src, root), root
    if kind == "coco":
        paths, root = _read_coco(src, root)
        return kind, paths, root
    return kind, [src], None


def list_images(path: PathLike, *, image_root: PathLike | None = None) -> list[str]:
    """Absolute paths of the images in a data source.

    Args:
        path: one of
            * a folder: searched recursively (symlinks followed) for files with an extension in
              :data:`IMAGE_EXTENSIONS` (any case); hidden files and folders (``.name``) are
              skipped; the result is sorted;
            * a list file (``.txt``/``.lst``): one path per line, relative paths resolved
              against ``image_root`` or else the list file's folder; blank lines and lines
              starting with ``#`` are ignored; file order is kept;
            * a COCO json (``.json`` with an ``images`` list of ``{"file_name": ...}``):
              ``file_name`` is resolved against ``image_root`` if given, else the first of
              the json's folder, ``../<split>/`` (``annotations/instances_train2017.json`` →
              ``train2017/``) and ``../images/`` that holds the first image; json order is kept;
            * a single image file;
            * WebDataset tar shards: a ``.tar`` file, a brace pattern
              (``shards/train-{000000..000009}.tar``, needs the ``wds`` extra), a folder whose
              top level holds ``.tar`` files and no images (sorted), or a list file of ``.tar``
              paths (relative ones resolved like image entries). Each image is named
              ``<shard>/<key>`` (:mod:`objssl.images.tar_shards`), shard by shard in tar order.
        image_root: folder that relative entries of a list file or COCO json are resolved against.

    Returns:
        absolute paths. Entries of a list file or json whose file is missing are dropped with a
        logged warning.

    Raises:
        DataError: the path is missing or of an unknown kind, a folder holds no images, a list
            file is empty, a json is malformed or not COCO, or none of the listed files exist;
            a shard is missing, listed twice, truncated or corrupt (named).
    """
    return _list(path, image_root)[1]


def describe_source(path: PathLike, *, image_root: PathLike | None = None) -> str:
    """One line for logs, e.g. ``"folder /data/imgs with 123 images"``.

    Raises :class:`DataError` like :func:`list_images`.
    """
    kind, paths, root = _list(path, image_root)
    src = os.path.abspath(os.path.expanduser(os.fspath(path)))
    n = f"{len(paths)} image{'s' if len(paths) != 1 else ''}"
    if kind == "folder":
        return f"folder {src} with {n}"
    if kind == "list":
        return f"list file {src} with {n}"
    if kind == "coco":
        return f"COCO json {src} with {n} (images under {root})"
    if kind in ("shards", "shard list"):
        return f"tar shards {src} ({root}) with {n}"
    return f"single image {src}"
