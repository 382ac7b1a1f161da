"""Every image mode becomes RGB uint8 with the right pixels; the EXIF orientation rule; bad files raise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixture_writers import assert_good_samples_loaded, index_of, voc_object_xml, voc_with_bad
from PIL import Image

from ssdlite.data import build_dataset, decode_image
from ssdlite.data.decode import ImageError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def _gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _palette_image() -> tuple[Image.Image, np.ndarray]:
    image = Image.fromarray(RGB).quantize(colors=16)
    return image, np.asarray(image.convert("RGB"))


def _cases():
    gray = RNG.integers(0, 256, (40, 60), dtype=np.uint8)
    rgba = np.concatenate([RGB, RNG.integers(0, 256, (40, 60, 1), dtype=np.uint8)], axis=2)
    deep = RNG.integers(0, 65536, (40, 60), dtype=np.uint16)
    bits = RNG.integers(0, 2, (40, 60)).astype(bool)
    palette, palette_rgb = _palette_image()
    return {
        "grayscale L": (Image.fromarray(gray), _gray_rgb(gray)),
        "bilevel 1": (Image.fromarray(bits), _gray_rgb(bits.astype(np.uint8) * 255)),
        "RGBA (alpha dropped)": (Image.fromarray(rgba), RGB),
        "LA": (Image.fromarray(gray).convert("LA"), _gray_rgb(gray)),
        "palette P": (palette, palette_rgb),
        "16-bit I;16 (top 8 bits)": (Image.fromarray(deep), _gray_rgb((deep >> 8).astype(np.uint8))),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_lossless_modes_become_exact_rgb(tmp_path, name):
    image, expected = _cases()[name]
    path = tmp_path / "image.png"
    image.save(path)
    decoded = decode_image(path)
    assert decoded.dtype == torch.uint8 and tuple(decoded.shape) == (3, 40, 60)
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), expected)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    xs, ys = np.meshgrid(np.linspace(0, 255, 60), np.linspace(0, 255, 40))
    smooth = np.stack([xs, ys, np.full((40, 60), 128.0)], axis=2)
    original = smooth.astype(np.uint8)
    Image.fromarray(original).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    decoded = decode_image(tmp_path / "cmyk.jpg").permute(1, 2, 0).numpy()
    assert np.abs(decoded.astype(int) - original).mean() < 4


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_a_non_rgb_sample_loads_among_good_samples(tmp_path, mode):
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 20))
    image = Image.fromarray(RGB)
    image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257) if mode == "I;16" else image.convert(mode)
    suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    (root / "JPEGImages" / "bad.jpg").unlink()
    image.save(root / "JPEGImages" / f"bad{suffix}")
    ds = build_dataset(root, split=None)
    decoded, target = ds[index_of(ds, "bad")]
    assert tuple(decoded.shape) == (3, 40, 60) and decoded.dtype == torch.uint8
    assert target["labels"].tolist() == [1] and not ds.load_failures()
    assert_good_samples_loaded(ds)


# EXIF orientation: stored 40x60 (HxW) pixels, tag 6 = displayed rotated 90 degrees clockwise, 60x40.


def _exif_image(path, orientation: int) -> np.ndarray:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB).save(path, exif=exif.tobytes())
    return RGB


def test_exif_rotation_is_applied_without_a_recorded_size_or_when_it_matches_the_display(tmp_path):
    stored = _exif_image(tmp_path / "r.png", 6)
    displayed = np.rot90(stored, k=-1)  # (60, 40, 3): 90 degrees clockwise
    for recorded in (None, (60, 40)):
        decoded = decode_image(tmp_path / "r.png", recorded).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(decoded, displayed)


def test_exif_rotation_is_ignored_when_the_annotation_was_drawn_on_the_stored_pixels(tmp_path):
    stored = _exif_image(tmp_path / "r.png", 6)
    np.testing.assert_array_equal(decode_image(tmp_path / "r.png", (40, 60)).permute(1, 2, 0).numpy(), stored)


def test_exif_ambiguous_flip_follows_the_tag_and_a_foreign_size_is_a_mismatch(tmp_path):
    stored = _exif_image(tmp_path / "r.png", 3)  # 180 degrees: same size either way
    np.testing.assert_array_equal(decode_image(tmp_path / "r.png", (40, 60)).permute(1, 2, 0).numpy(), stored[::-1, ::-1])
    with pytest.raises(ImageError) as err:
        decode_image(tmp_path / "r.png", (30, 30))
    assert err.value.kind == "size_mismatch"


def test_exif_rule_in_a_dataset_keeps_boxes_on_the_pixels_they_were_drawn_on(tmp_path):
    # The annotation records the displayed 40x60 (WxH) size: the image is rotated to match it.
    root = voc_with_bad(tmp_path, voc_object_xml("cat", 1, 1, 20, 50), size=(60, 40))
    (root / "JPEGImages" / "bad.jpg").unlink()
    _exif_image(root / "JPEGImages" / "bad.png", 6)
    ds = build_dataset(root, split=None)
    image, target = ds[index_of(ds, "bad")]
    assert tuple(image.shape) == (3, 60, 40) and target["boxes"].canvas_size == (60, 40)
    assert_good_samples_loaded(ds)


def test_missing_file_and_bomb_limit_raise_with_their_kind(tmp_path):
    with pytest.raises(ImageError) as err:
        decode_image(tmp_path / "nope.jpg")
    assert err.value.kind == "image_missing"
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    with pytest.raises(ImageError) as err:
        decode_image(tmp_path / "ok.png", max_pixels=40 * 60 - 1)
    assert err.value.kind == "image_too_large"
    assert decode_image(tmp_path / "ok.png", max_pixels=40 * 60).shape == (3, 40, 60)
