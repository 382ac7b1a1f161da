"""Image decoding that never returns a silently wrong image.

Every image becomes a ``uint8`` ``(3, H, W)`` RGB tensor:

- grayscale (``L``, ``1``), palette (``P``), ``RGBA``/``LA`` (alpha dropped: the stored colours are
  kept, as OpenCV and ``torchvision.io`` do), ``CMYK`` and ``YCbCr`` are converted by Pillow;
- 16-bit grayscale (``I;16``, PNG/TIFF) keeps its top 8 bits; 32-bit ``I`` and float ``F`` images
  are scaled the same way when they exceed 8 bits (and clipped to ``[0, 255]``);
- a file that is missing, truncated, not an image, or larger than ``max_pixels`` raises
  :class:`ImageError` whose ``kind`` is the matching problem kind (see :mod:`ssdlite.data.problems`);
  the size is checked from the header before any pixel is decoded (decompression bombs).

**EXIF orientation rule.** Cameras store pixels sensor-side up and an EXIF ``Orientation`` tag saying
how to display them; annotation tools disagree on whether they apply it. The annotation's recorded
size tells which orientation the boxes were drawn in:

1. no tag, or ``Orientation = 1``: pixels are used as stored;
2. a recorded size ``(H, W)`` equal to the stored pixels' size but not to the displayed size
   (a 90-degree tag, 5 to 8, on a non-square image): the boxes were drawn on the stored pixels, so the
   tag is ignored;
3. otherwise (no recorded size, as in YOLO; or the recorded size equals the displayed size, including
   every ambiguous case: square images and the flip/180-degree tags 2 to 4) the tag is applied, as
   every image viewer does;
4. a recorded size equal to neither is a ``size_mismatch`` error: the boxes cannot be trusted.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from ssdlite.errors import DataError

# 2**27 = 134M pixels (about 400 MB as RGB): above any real photo a detector is trained on, far below
# what a decompression bomb asks for. Pillow's own limit is a process-wide global; ours is an argument.
MAX_PIXELS = 2**27

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(DataError):
    """An image that cannot be used: ``path``, ``kind`` (a problem kind) and ``detail`` (why)."""

    def __init__(self, kind: str, detail: str, path: str | Path = "") -> None:
        super().__init__(f"{path}: {detail}" if path else detail)
        self.kind = kind
        self.detail = detail
        self.path = str(path)


def _open(path: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse oversized images before decoding any pixel."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise ImageError("image_missing", "image file not found") from None
    except Image.DecompressionBombError as err:
        raise ImageError("image_too_large", f"image too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ImageError("image_corrupt", "not an image file Pillow can read") from None
    except OSError as err:
        kind = "image_truncated" if "truncated" in str(err).lower() else "image_corrupt"
        raise ImageError(kind, f"cannot open image ({err})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            "image_too_large",
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "(decompression-bomb guard)",
        )
    if width == 0 or height == 0:
        image.close()
        raise ImageError("image_corrupt", f"image has zero size {width}x{height}")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not make a readable image unusable
        return 1
    return value if value in _TRANSPOSE else 1


def _transpose_rule(image: Image.Image, recorded_size: tuple[int, int] | None) -> int:
    """The EXIF orientation to apply (1 = none) under the module's rule; raises on a size mismatch."""
    orientation = _orientation(image)
    stored = (image.height, image.width)
    displayed = (stored[1], stored[0]) if orientation >= 5 else stored
    if recorded_size is None:
        return orientation
    recorded = (int(recorded_size[0]), int(recorded_size[1]))
    if recorded == displayed:
        return orientation
    if recorded == stored:
        return 1
    raise ImageError(
        "size_mismatch",
        f"annotation says {recorded[1]}x{recorded[0]} (WxH) but the image is {displayed[1]}x{displayed[0]}"
        + (f" (stored {stored[1]}x{stored[0]}, EXIF orientation {orientation})" if orientation != 1 else ""),
    )


def image_size(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """``(H, W)`` of the image as displayed (EXIF orientation applied), from the header only."""
    try:
        image = _open(Path(path), max_pixels)
    except ImageError as err:
        raise ImageError(err.kind, err.detail, path) from None
    with image:
        orientation = _orientation(image)
        return (image.width, image.height) if orientation >= 5 else (image.height, image.width)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Decoded Pillow image of any mode -> ``(H, W, 3)`` uint8 RGB array."""
    mode = image.mode
    if mode == "RGB":
        return np.array(image)
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.array(image)
        if mode in _SIXTEEN_BIT:
            values = values.astype(np.uint16) >> 8
        elif values.size and values.max() > 255:
            values = values.astype(np.float64) / 257.0 if values.max() <= 65535 else values / values.max() * 255
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    with warnings.catch_warnings():
        # Pillow warns that palette images with transparency "should be converted to RGBA"; we drop alpha.
        warnings.simplefilter("ignore", UserWarning)
        try:
            return np.array(image.convert("RGB"))
        except ValueError as err:
            raise ImageError("image_corrupt", f"image mode {mode} cannot be converted to RGB ({err})") from None


def decode_image(
    path: str | Path,
    recorded_size: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> tv_tensors.Image:
    """Read an image file as a ``uint8`` ``(3, H, W)`` RGB ``tv_tensors.Image``.

    Args:
        path: the image file.
        recorded_size: ``(H, W)`` the annotation recorded, or None; decides the EXIF rule (module doc)
            and must match the image.
        max_pixels: refuse images with more pixels than this, before decoding.

    Raises:
        ImageError: with ``kind`` ``image_missing``, ``image_corrupt``, ``image_truncated``,
            ``image_too_large`` or ``size_mismatch``.
    """
    try:
        return _decode(Path(path), recorded_size, max_pixels)
    except ImageError as err:
        raise ImageError(err.kind, err.detail, path) from None


def decode_image_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> tv_tensors.Image:
    """:func:`decode_image` for an image held in memory (an upload): the same conversions, the same
    size guard before any pixel is decoded, and the EXIF orientation applied (there is no recorded size).

    Raises:
        ImageError: ``image_corrupt``, ``image_truncated`` or ``image_too_large``, without a path.
    """
    return _decode(io.BytesIO(data), None, max_pixels)


def _decode(path: Path | BinaryIO, recorded_size: tuple[int, int] | None, max_pixels: int) -> tv_tensors.Image:
    image = _open(path, max_pixels)
    with image:
        orientation = _transpose_rule(image, recorded_size)
        try:
            image.load()
        except OSError as err:
            kind = "image_truncated" if "truncated" in str(err).lower() else "image_corrupt"
            raise ImageError(kind, f"cannot decode image ({err})") from None
        except (SyntaxError, ValueError, EOFError) as err:  # Pillow plugins signal bad data with these too
            raise ImageError("image_corrupt", f"cannot decode image ({err})") from None
        if orientation != 1:
            image = image.transpose(_TRANSPOSE[orientation])
        array = _to_rgb_array(image)  # (H, W, 3)
    # A channels-last view: torchvision's uint8 resize kernel is fastest on exactly this layout.
    return tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))  # (3, H, W)
