"""load_rgb / image_size on every odd or broken kind of file, all generated into tmp_path."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from objssl.images.decode import BadImageError, image_size, load_rgb, to_rgb


def _scene(w: int = 48, h: int = 32) -> np.ndarray:
    """RGB uint8 [h, w, 3] with smooth gradients, so JPEG keeps it close."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1)
    return rgb.astype(np.uint8)


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _jpeg_with_orientation(path: Path, orientation: int) -> Path:
    """48x32 JPEG, grey, with a red 8x8 block at the stored top-left corner and an EXIF tag."""
    a = np.full((32, 48, 3), 128, np.uint8)
    a[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(Image.fromarray(a), path, quality=95, exif=exif.tobytes())


def _is_red(px) -> bool:
    r, g, b = px
    return r > 200 and g < 60 and b < 60


# ---------------------------------------------------------------- good files, every mode


def test_rgb_png_round_trips_exactly(tmp_path):
    a = _scene()
    img = load_rgb(_save(Image.fromarray(a), tmp_path / "a.png"))
    assert img.mode == "RGB" and img.size == (48, 32)
    np.testing.assert_array_equal(np.asarray(img), a)


def test_result_is_usable_after_the_file_is_gone(tmp_path):
    path = _save(Image.fromarray(_scene()), tmp_path / "a.png")
    img = load_rgb(path)
    path.unlink()
    assert np.asarray(img.resize((8, 8))).shape == (8, 8, 3)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_and_bilevel_become_three_equal_channels(tmp_path, mode):
    ramp = (np.arange(64 * 16) % 256).reshape(16, 64).astype(np.uint8)
    grey = Image.fromarray(ramp).convert(mode)
    out = np.asarray(load_rgb(_save(grey, tmp_path / f"g_{mode}.png")))
    assert out.shape == (16, 64, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(out[..., 0], np.asarray(grey.convert("L")))


def test_palette_with_transparent_index_is_composited_over_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black (transparent), 1 blue
    img.paste(1, (0, 0, 5, 10))
    path = _save(img, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    out = np.asarray(load_rgb(path))
    np.testing.assert_array_equal(out[0, 0], (0, 0, 255))  # opaque blue stays blue
    np.testing.assert_array_equal(out[0, 9], (255, 255, 255))  # transparent: white, not black


def test_palette_without_transparency_keeps_colours(tmp_path):
    a = _scene()
    pal = Image.fromarray(a).quantize(16)
    out = load_rgb(_save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pal.convert("RGB")))


def test_rgba_alpha_composited_over_background(tmp_path):
    a = np.zeros((4, 3, 4), np.uint8)
    a[:, 0] = (255, 0, 0, 0)  # fully transparent red: hidden colour must not show
    a[:, 1] = (0, 0, 255, 255)  # opaque blue
    a[:, 2] = (0, 0, 0, 128)  # half-transparent black
    path = _save(Image.fromarray(a), tmp_path / "rgba.png")
    out = np.asarray(load_rgb(path))
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(out[0, 1], (0, 0, 255))
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)
    grey_bg = np.asarray(load_rgb(path, background=(10, 20, 30)))
    np.testing.assert_array_equal(grey_bg[0, 0], (10, 20, 30))


def test_la_grey_with_alpha(tmp_path):
    la = Image.merge("LA", [Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 0)])
    out = np.asarray(load_rgb(_save(la, tmp_path / "la.png")))
    assert (out == 255).all()  # black but fully transparent → background


def test_cmyk_jpeg_is_converted_with_the_right_colours(tmp_path):
    cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.paste((255, 255, 0, 0), (16, 0, 32, 16))  # cyan + magenta = blue
    path = _save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_rgb(path)
    assert out.mode == "RGB"
    assert _is_red(out.getpixel((4, 8)))
    r, g, b = out.getpixel((28, 8))
    assert b > 200 and r < 60 and g < 60


def test_16bit_png_gradient_stays_a_gradient(tmp_path):
    # 16-bit values over the full range: Pillow's own convert("RGB") would clip to flat white
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    path = _save(Image.fromarray(np.tile(ramp, (8, 1))), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I;16")
    row = np.asarray(load_rgb(path))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and np.unique(row).size > 200
    np.testing.assert_allclose(row, ramp / 257.0, atol=1)


def test_16bit_partial_range_is_stretched_not_black(tmp_path):
    # a 12-bit sensor stored in a 16-bit container: values 1000..4000 of 65535
    ramp = np.linspace(1000, 4000, 64).round().astype(np.uint16)
    path = _save(Image.fromarray(np.tile(ramp, (4, 1))), tmp_path / "g12.png")
    row = np.asarray(load_rgb(path))[0, :, 0].astype(int)
    assert row.min() == 0 and row.max() == 255 and np.all(np.diff(row) >= 0)


def test_16bit_big_endian_and_constant(tmp_path):
    ramp = np.linspace(0, 60000, 32).astype(np.uint16)
    big = Image.frombytes("I;16B", (32, 1), ramp.astype(">u2").tobytes())
    row = np.asarray(load_rgb(_save(big, tmp_path / "b.tif")))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) > 0)
    flat = Image.fromarray(np.full((4, 4), 32896, np.uint16))  # 32896 / 257 = 128
    assert np.asarray(load_rgb(_save(flat, tmp_path / "flat.png")))[0, 0, 0] == 128


def test_float_and_int32_tiff_stretched_by_range(tmp_path):
    f = np.linspace(-3.5, 10.0, 40, dtype=np.float32).reshape(1, 40).repeat(2, 0)
    f[1, 5] = np.nan  # non-finite values count as 0 and must not poison the range
    row = np.asarray(load_rgb(_save(Image.fromarray(f), tmp_path / "f.tif")))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) > 0)
    i = Image.fromarray(np.arange(-500, 500, 10, dtype=np.int32).reshape(1, 100))
    assert i.mode == "I"
    row = np.asarray(load_rgb(_save(i, tmp_path / "i.tif")))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "CMYK"])
def test_other_file_modes_are_converted(tmp_path, mode):
    path = _save(Image.fromarray(_scene()).convert(mode), tmp_path / f"x_{mode}.tif")
    assert Image.open(path).mode == mode
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (48, 32)
    assert np.abs(np.asarray(out).astype(int) - _scene().astype(int)).mean() < 12


def test_to_rgb_in_memory_modes():
    hsv = Image.fromarray(_scene()).convert("HSV")
    out = to_rgb(hsv)
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - _scene().astype(int)).mean() < 12
    pa = Image.new("P", (2, 1))
    pa.putpalette([0, 255, 0] * 256)
    pa = pa.convert("PA")
    pa.putalpha(Image.frombytes("L", (2, 1), bytes([255, 0])))
    np.testing.assert_array_equal(np.asarray(to_rgb(pa)), [[(0, 255, 0), (255, 255, 255)]])


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".ppm", ".gif"])
def test_common_formats(tmp_path, ext):
    out = load_rgb(_save(Image.fromarray(_scene()), tmp_path / f"a{ext}"))
    assert out.mode == "RGB" and out.size == (48, 32)


# ---------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize(
    "orientation, red_corner",
    [(1, "top_left"), (6, "top_right"), (8, "bottom_left"), (3, "bottom_right")],
)
def test_exif_orientation_rotates_pixels(tmp_path, orientation, red_corner):
    path = _jpeg_with_orientation(tmp_path / f"o{orientation}.jpg", orientation)
    out = load_rgb(path)
    w, h = out.size
    assert (w, h) == ((32, 48) if orientation in (6, 8) else (48, 32))
    assert image_size(path) == (w, h)
    corners = {
        "top_left": (3, 3), "top_right": (w - 4, 3),
        "bottom_left": (3, h - 4), "bottom_right": (w - 4, h - 4),
    }
    for name, xy in corners.items():
        assert _is_red(out.getpixel(xy)) == (name == red_corner), (name, out.getpixel(xy))


def test_malformed_exif_does_not_lose_the_image(tmp_path):
    path = _save(Image.fromarray(_scene()), tmp_path / "x.jpg", exif=b"Exif\x00\x00garbage-bytes")
    assert load_rgb(path).size == (48, 32)


# ---------------------------------------------------------------- bad files


def _reason(path, **kwargs) -> str:
    with pytest.raises(BadImageError) as info:
        load_rgb(path, **kwargs)
    err = info.value
    assert err.path == str(path) and str(err) == f"{path}: {err.reason}"
    return err.reason


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.jpg") == "no such file"


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty file" in _reason(tmp_path / "empty.png")


def test_directory(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    assert "directory" in _reason(tmp_path / "d.jpg")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 10)
    assert "not an image" in _reason(tmp_path / "notes.jpg")


def test_random_bytes(tmp_path):
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(2000))
    assert "not an image" in _reason(tmp_path / "noise.png")


def test_corrupt_png_body(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_scene(64, 64)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[100:140] = b"\xff" * 40  # clobber compressed pixel data (inside the IDAT chunk)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert image_size(tmp_path / "bad.png") == (64, 64)  # the header alone is fine...
    reason = _reason(tmp_path / "bad.png")  # ...the full decode is not
    assert "corrupt" in reason or "cannot" in reason


@pytest.mark.parametrize("fmt, ext", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_file(tmp_path, fmt, ext):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _reason(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the global switch was not touched


def test_smaller_than_min_side(tmp_path):
    path = _save(Image.new("RGB", (12, 9)), tmp_path / "tiny.png")
    assert _reason(path, min_side=32) == "image is 12x9 px, smaller than min_side=32"
    assert load_rgb(path, min_side=9).size == (12, 9)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = _save(Image.new("L", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px > 2 x limit
    assert "decompression bomb" in _reason(path)


def test_error_pickles_with_its_fields(tmp_path):
    err = pickle.loads(pickle.dumps(BadImageError(tmp_path / "x.jpg", "no such file")))
    assert isinstance(err, ValueError)
    assert (err.path, err.reason, str(err)) == (
        str(tmp_path / "x.jpg"), "no such file", f"{tmp_path / 'x.jpg'}: no such file"
    )


def test_image_size_errors(tmp_path):
    with pytest.raises(BadImageError, match="no such file"):
        image_size(tmp_path / "missing.png")
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(BadImageError, match="not an image"):
        image_size(tmp_path / "t.png")
