"""The one image-loading path, and the release's transform order for the vision tower.

:func:`load_image` is what training, evaluation, ``aki chat``, the server and the demo call. It
decodes the whole file now (a corrupt or truncated file fails here, naming the file, instead of
training on half an image), checks the pixel count against a limit it names, converts
high-bit-depth pixels to 8 bits by the range their format *declares*, and otherwise keeps the
image's mode: palette and alpha stay, because the tower's transform drops alpha only *after*
resizing, as the official release does (:func:`tower_rgb`). EXIF orientation is not applied
(the release does not apply it either).

Declared ranges (never guessed from the pixel values):

- ``I;16`` / ``I;16L`` / ``I;16B`` / ``I;16N`` (16-bit PNG, TIFF, PGM): 0..65535, or
  0..2**bits-1 when a TIFF ``BitsPerSample`` tag says fewer bits;
- ``I`` (32-bit integers): 0..65535 for PNG and PGM/PPM (Pillow widens their 16-bit samples to
  that range); a TIFF's ``BitsPerSample`` / ``SampleFormat``; any other ``I`` image has no
  declared range and is refused;
- ``F`` (32-bit floats): a TIFF's ``SMinSampleValue`` / ``SMaxSampleValue`` when present, else
  [0, 1] (the convention of float images in PyTorch and transformers);
- numpy arrays and tensors by dtype: ``uint8`` 0..255, ``uint16`` 0..65535, ``bool`` 0/1,
  floats [0, 1]; other integer dtypes carry no range and are refused (cast them first).

Values outside the declared range are clipped; NaN becomes 0.

Why Pillow's own guard is replaced: it calls a valid large photo a "decompression bomb" (and
aki's old loader then called it corrupt). Here a file over the limit gets its own error naming
its size, the limit and the two ways to raise it (``max_pixels=`` or ``AKI_MAX_IMAGE_PIXELS``).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile

ImageInput = str | os.PathLike | bytes | bytearray | BinaryIO | np.ndarray | Image.Image

MAX_PIXELS_ENV = "AKI_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 178_956_970
"""Pillow's own hard limit (twice its warning threshold): what Pillow opened before still opens."""

HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT = 258, 339
_TIFF_SMIN, _TIFF_SMAX = 340, 341


class ImageLoadError(ValueError):
    """An image could not be read: missing, not an image, corrupt, truncated, or unusable pixels."""


class ImageNotFoundError(ImageLoadError, FileNotFoundError):
    """The image file does not exist."""


class ImageTooLargeError(ImageLoadError):
    """A valid image with more pixels than the configured limit."""

    def __init__(self, message: str, *, pixels: int, limit: int) -> None:
        super().__init__(message)
        self.pixels = pixels
        self.limit = limit


# ----------------------------------------------------------------------------- Pillow globals
_guard_lock = threading.Lock()
_guard_depth = 0
_guard_saved: tuple[bool, int | None] = (False, None)


@contextmanager
def _strict_pillow() -> Iterator[None]:
    """While any aki load runs: truncated files raise, and Pillow's bomb check is off (ours runs).

    Pillow keeps both switches in module globals; a reference count restores the caller's values
    only when the last concurrent load (from any thread) finishes.
    """
    global _guard_depth, _guard_saved
    with _guard_lock:
        if _guard_depth == 0:
            _guard_saved = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
        _guard_depth += 1
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = _guard_saved


# ----------------------------------------------------------------------------- limits
def resolve_max_pixels(max_pixels: int | None = None) -> int | None:
    """The pixel limit: ``max_pixels`` if given, else ``$AKI_MAX_IMAGE_PIXELS``, else the default.

    0 (or ``none`` in the environment variable) means no limit.
    """
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        if raw.lower() in ("0", "none", "off", "unlimited"):
            return None
        try:
            max_pixels = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(
                f"{MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels; set it to e.g. "
                f"400000000 (or 0 for no limit)."
            ) from None
    if max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0 (0 = no limit); got {max_pixels}.")
    return max_pixels or None


def _check_size(img: Image.Image, what: str, limit: int | None) -> None:
    width, height = img.size
    pixels = width * height
    if limit is not None and pixels > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {pixels:,} pixels, over the limit of {limit:,} pixels "
            "that guards against decompression bombs; if you trust the file, raise the limit "
            f"with load_image(..., max_pixels={pixels}) or the environment variable "
            f"{MAX_PIXELS_ENV}={pixels} (0 = no limit), or downscale the image.",
            pixels=pixels,
            limit=limit,
        )


# ----------------------------------------------------------------------------- bit depth
def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"image file {os.fspath(src)!r}"
    name = getattr(src, "filename", None) or getattr(src, "name", None)
    if isinstance(name, str) and name:
        return f"image file {name!r}"
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"image bytes ({len(src)} bytes)"
    return f"image {type(src).__name__}"


def _tiff_tag(img: Image.Image, tag: int):
    tags = getattr(img, "tag_v2", None)
    if tags is None or tag not in tags:
        return None
    value = tags[tag]
    return value[0] if isinstance(value, tuple) else value


def declared_range(img: Image.Image) -> tuple[float, float] | None:
    """The sample range a high-bit-depth image's format declares (None when it declares none)."""
    mode, fmt = img.mode, (img.format or "").upper()
    bits = _tiff_tag(img, _TIFF_BITS_PER_SAMPLE) if fmt == "TIFF" else None
    if mode == "F":
        low, high = _tiff_tag(img, _TIFF_SMIN), _tiff_tag(img, _TIFF_SMAX)
        if low is not None and high is not None and float(high) > float(low):
            return float(low), float(high)
        return 0.0, 1.0
    if mode.startswith("I;16"):
        return 0.0, float(2 ** int(bits) - 1) if bits and int(bits) < 16 else 65535.0
    if mode == "I":
        if fmt in ("PNG", "PPM"):
            return 0.0, 65535.0
        if bits:
            if _tiff_tag(img, _TIFF_SAMPLE_FORMAT) == 2:  # signed integers
                half = 2 ** (int(bits) - 1)
                return float(-half), float(half - 1)
            return 0.0, float(2 ** int(bits) - 1)
    return None


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    data = np.nan_to_num(values.astype(np.float64), nan=low, posinf=high, neginf=low)
    data = (data - low) * (255.0 / (high - low))
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def _to_eight_bits(img: Image.Image, what: str) -> Image.Image:
    """A high-bit-depth image as 8-bit ``L``, scaled by its declared range."""
    bounds = declared_range(img)
    if bounds is None:
        raise ImageLoadError(
            f"{what} has mode {img.mode!r} (32-bit integers) and its format declares no bit depth, "
            "so its pixel range is unknown; convert it to 8-bit ('L'/'RGB') or 16-bit ('I;16') "
            "yourself, e.g. Image.fromarray((arr * 255 // arr_max).astype('uint8'))."
        )
    return Image.fromarray(_scale_to_uint8(np.asarray(img), *bounds), mode="L")


def _array_to_image(array: np.ndarray, what: str) -> Image.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageLoadError(
            f"cannot read an image from an array of shape {arr.shape}; pass HxW, HxWx3, HxWx4 "
            "(or CxHxW) pixels."
        )
    if arr.dtype == np.uint8:
        pixels = arr
    elif arr.dtype == np.bool_:
        pixels = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        pixels = _scale_to_uint8(arr, 0.0, 65535.0)
    elif np.issubdtype(arr.dtype, np.floating):
        pixels = _scale_to_uint8(arr, 0.0, 1.0)
    else:
        raise ImageLoadError(
            f"{what} has dtype {arr.dtype}, which declares no pixel range; cast it to uint8 "
            "(0..255), uint16 (0..65535) or a float dtype scaled to [0, 1]."
        )
    mode = "L" if pixels.ndim == 2 else ("RGB" if pixels.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(pixels), mode=mode)


def _finish(img: Image.Image, what: str) -> Image.Image:
    return _to_eight_bits(img, what) if img.mode in HIGH_BIT_DEPTH_MODES else img


# ----------------------------------------------------------------------------- loading
def load_image(src: ImageInput, *, max_pixels: int | None = None) -> Image.Image:
    """Load ``src`` (path, bytes, file object, PIL image, numpy array or tensor), fully decoded.

    Returns a PIL image in its own mode (palette and alpha kept; high-bit-depth modes converted
    to 8-bit ``L`` by their declared range). ``max_pixels``: the size limit (default
    ``$AKI_MAX_IMAGE_PIXELS``, else 178,956,970; 0 = none). Raises :class:`ImageTooLargeError`
    for a valid image over the limit and :class:`ImageLoadError` (a ValueError) naming the source
    when it is missing, not an image, corrupt or truncated.
    """
    limit = resolve_max_pixels(max_pixels)
    what = _describe(src)
    if isinstance(src, Image.Image):
        _check_size(src, what, limit)
        try:
            with _strict_pillow():
                src.load()
        except Exception as err:
            raise ImageLoadError(f"could not decode {what}: {type(err).__name__}: {err}.") from err
        return _finish(src, what)
    if isinstance(src, np.ndarray):
        return _array_to_image(src, what)
    if type(src).__module__.startswith("torch") and hasattr(src, "detach"):
        return _array_to_image(src.detach().cpu().numpy(), what)
    if isinstance(src, str) and src.startswith(("http://", "https://")):
        raise ImageLoadError(
            f"{what} is a URL; aki does not download images: save it to a file and pass the path."
        )
    if isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise ImageNotFoundError(f"{what} does not exist; check the path (relative to {os.getcwd()!r}).")
        opened: Any = src
    elif isinstance(src, (bytes, bytearray, memoryview)):
        opened = io.BytesIO(bytes(src))
    elif hasattr(src, "read"):
        opened = src
    else:
        raise ImageLoadError(
            f"cannot load an image from a {type(src).__name__}; pass a path, bytes, a file object, "
            "a PIL image or a numpy array."
        )
    try:
        with _strict_pillow(), Image.open(opened) as img:
            _check_size(img, what, limit)
            img.load()
    except ImageLoadError:
        raise
    except Exception as err:
        raise ImageLoadError(
            f"could not decode {what}: {type(err).__name__}: {err}. The file is corrupt, "
            "truncated or not an image; re-download or re-encode it, or drop it from the data."
        ) from err
    return _finish(img, what)


def tower_rgb(image: Image.Image, size: tuple[int, int] | None, resample: int = Image.Resampling.BICUBIC) -> Image.Image:
    """The release's order: resize to ``size`` (width, height) in the image's own mode, then RGB.

    Alpha is dropped by ``convert("RGB")``, not composited (as the release does); palette and
    bilevel images are resized by Pillow with nearest neighbour (Pillow's rule for those modes,
    which the release inherits). An RGB image comes out exactly as SigLIP's image processor
    would resize it. ``size=None`` converts only.
    """
    if size is not None and image.size != tuple(size):
        image = image.resize(tuple(size), resample=Image.Resampling(resample))
    if image.mode == "La":  # premultiplied alpha: Pillow converts it to RGB only through LA
        image = image.convert("LA")
    return image if image.mode == "RGB" else image.convert("RGB")


def to_rgb(image: ImageInput) -> Image.Image:
    """Load ``image`` and convert it to RGB at its own size (alpha dropped, as the tower's transform does)."""
    return tower_rgb(load_image(image), None)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageLoadError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "declared_range",
    "load_image",
    "resolve_max_pixels",
    "to_rgb",
    "tower_rgb",
]
