"""The one image reader (shapekit.io.images): every Pillow mode, 16-bit scaling, the
pixel limit against decompression bombs, and the package's users reading the same
pixels (issue 15)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shapekit.errors import FormatError, ShapekitError
from shapekit.io import read_image
from shapekit.io.images import MAX_PIXELS, pixels

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)


def _luma(rgb):
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)


# (mode, how to make it, expected pixels (H, W) grey or (H, W, 3) RGB, tolerance)
def _cases():
    rgb_im = Image.fromarray(RGB, "RGB")
    alpha = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    yield "1", Image.fromarray(GREY > 127).convert("1"), np.where(GREY > 127, 255, 0), 0
    yield "L", Image.fromarray(GREY, "L"), GREY, 0
    yield "LA", Image.fromarray(np.dstack([GREY, alpha]), "LA"), GREY, 0
    yield "La", Image.fromarray(np.dstack([GREY, np.full_like(GREY, 255)]), "LA").convert("La"), GREY, 0
    yield "P", rgb_im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), None, 0
    yield "PA", Image.fromarray(np.dstack([GREY, alpha]), "LA").convert("PA"), None, 0
    yield "RGB", rgb_im, RGB, 0
    yield "RGBA", Image.fromarray(np.dstack([RGB, alpha]), "RGBA"), RGB, 0
    yield "RGBX", rgb_im.convert("RGBX"), RGB, 0
    yield "RGBa", Image.fromarray(np.dstack([RGB, np.full_like(GREY, 255)]), "RGBA").convert("RGBa"), RGB, 0
    yield "CMYK", rgb_im.convert("CMYK"), RGB, 1
    yield "YCbCr", rgb_im.convert("YCbCr"), RGB, 4
    yield "LAB", rgb_im.convert("LAB"), None, 0
    yield "HSV", rgb_im.convert("HSV"), RGB, 4
    v16 = GREY.astype(np.uint16) * 257  # 8-bit values spread over 16 bits: scale back exactly
    for mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        raw = v16.astype(">u2" if mode.endswith("B") else "<u2").tobytes()
        yield mode, Image.frombytes(mode, (7, 5), raw), GREY, 0
    yield "I", Image.fromarray(v16.astype(np.int32), "I"), GREY, 0
    yield "F", Image.fromarray(GREY.astype(np.float32), "F"), GREY, 0


CASES = list(_cases())


def test_every_pillow_mode_is_listed():
    assert {c[0] for c in CASES} >= set(Image.MODES), set(Image.MODES) - {c[0] for c in CASES}


@pytest.mark.parametrize("mode, im, expected, tol", CASES, ids=[c[0] for c in CASES])
def test_pixels_of_every_pillow_mode(mode, im, expected, tol):
    assert im.mode == mode
    out = pixels(im)
    assert out.dtype == np.uint8 and out.shape[:2] == (5, 7)
    assert out.ndim == 2 or out.shape[2] == 3
    if expected is None:  # palettes and LAB: the same pixels as Pillow's own RGB conversion
        expected = np.asarray(im.convert("RGB"))
    expected = np.asarray(expected, dtype=np.int64)
    assert np.abs(out.astype(np.int64) - expected).max() <= tol


@pytest.mark.parametrize("mode, ext", [("1", "png"), ("L", "png"), ("LA", "png"), ("P", "png"), ("RGB", "png"),
                                       ("RGBA", "png"), ("I;16", "png"), ("I", "tiff"), ("F", "tiff"),
                                       ("CMYK", "jpg"), ("CMYK", "tiff"), ("RGB", "bmp"), ("L", "ppm")])
def test_files_of_each_mode_read_as_their_pixels(tmp_path, mode, ext):
    im = next(c[1] for c in CASES if c[0] == mode)
    path = tmp_path / f"x.{ext}"
    im.save(path)
    with Image.open(path) as back:
        expected = pixels(back)  # the decoded file's pixels (JPEG is lossy)
    rgb, grey = read_image(path), read_image(path, grey=True)
    assert rgb.shape == (5, 7, 3) and grey.shape == (5, 7) and rgb.dtype == grey.dtype == np.uint8
    exp_rgb = np.repeat(expected[..., None], 3, axis=2) if expected.ndim == 2 else expected
    np.testing.assert_array_equal(rgb, exp_rgb)
    exp_grey = expected if expected.ndim == 2 else _luma(expected)
    assert np.abs(grey.astype(int) - exp_grey.astype(int)).max() <= 1


def test_16_bit_png_is_scaled_not_clipped_everywhere(tmp_path):
    from shapekit.asm.model import load_image as asm_load
    from shapekit.data.images import load_image

    ramp = np.linspace(0, 65535, 64 * 48).astype(np.uint16).reshape(48, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow keeps the 16 bits
    expected = np.rint(ramp / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(path, grey=True), expected)
    np.testing.assert_array_equal(load_image(path, grey=True), expected)
    np.testing.assert_array_equal(load_image(path)[..., 1], expected)
    np.testing.assert_array_equal(asm_load(path)[..., 0], expected)
    assert (expected == 255).mean() < 0.01  # the old clipping made 99 % of them 255


def _png_declaring(width, height):
    """A valid 1x1 PNG whose header then claims ``width`` x ``height``."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_clear_error_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(FormatError) as info:
        read_image(bomb)
    assert str(bomb) in str(info.value) and "SHAPEKIT_MAX_IMAGE_PIXELS" in str(info.value)
    small = tmp_path / "small.png"
    Image.fromarray(GREY, "L").save(small)
    with pytest.raises(FormatError, match="more than the limit of 20"):
        read_image(small, max_pixels=20)  # 35 pixels
    monkeypatch.setenv("SHAPEKIT_MAX_IMAGE_PIXELS", "20")
    with pytest.raises(FormatError, match="limit of 20"):
        read_image(small)
    assert read_image(small, max_pixels=35).shape == (5, 7, 3)  # the argument wins
    monkeypatch.setenv("SHAPEKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ShapekitError, match="must be an integer"):
        read_image(small)
    monkeypatch.delenv("SHAPEKIT_MAX_IMAGE_PIXELS")
    # within a raised limit the file is decoded, and its damage is a FormatError too
    big = tmp_path / "big.png"
    big.write_bytes(_png_declaring(20_000, 10_000))
    assert 20_000 * 10_000 > MAX_PIXELS
    with pytest.raises(FormatError, match="more than the limit"):
        read_image(big)
    with pytest.raises(FormatError, match="cannot read the image"):
        read_image(big, max_pixels=20_000 * 10_000)


def test_damaged_images_are_format_errors(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(RGB, "RGB").save(path)
    data = path.read_bytes()
    rng = np.random.default_rng(1)
    for k in range(60):
        damaged = bytearray(data[:rng.integers(8, len(data))] if k % 2 else data)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(0, len(damaged))] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(damaged))
        try:
            out = read_image(path)
        except FormatError:
            continue
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    with pytest.raises(ShapekitError, match="no such image"):
        read_image(tmp_path / "missing.png")
