"""Image loading and the vision tower's transform.

``load_image`` turns anything image-like into an 8-bit RGB PIL image and fails loudly on a
corrupt or truncated file (a silently half-decoded image would train on garbage).
``AkiImageProcessor`` is the official AKI transform: squash-resize to the tower's square size
with antialiased bicubic, scale to [0, 1], normalise with mean 0.5 / std 0.5.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile

ImageInput = str | os.PathLike | bytes | bytearray | BinaryIO | np.ndarray | Image.Image


class ImageLoadError(ValueError):
    """An image could not be decoded completely."""


@contextmanager
def _strict_decoding():
    """Refuse truncated files while decoding (other code may have switched PIL to lenient)."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"image file {os.fspath(src)!r}"
    name = getattr(src, "filename", None) or getattr(src, "name", None)
    if isinstance(name, str) and name:
        return f"image file {name!r}"
    if isinstance(src, (bytes, bytearray)):
        return f"image bytes ({len(src)} bytes)"
    return f"image {type(src).__name__}"


def _white_composite(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """High-bit-depth or float pixels to 0..255.

    Floats with max <= 1 are taken as [0, 1]; integers above 255 as 16-bit (0..65535); other
    values as already 0..255. Everything is clipped.
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    data = values.astype(np.float64)
    finite = data[np.isfinite(data)]
    peak = float(finite.max()) if finite.size else 0.0
    if np.issubdtype(values.dtype, np.floating) and peak <= 1.0:
        data = data * 255.0
    elif peak > 255.0:
        data = data / 257.0
    data = np.nan_to_num(data, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
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
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr).convert("RGB")
    if arr.shape[-1] == 4:
        return _white_composite(Image.fromarray(np.ascontiguousarray(arr)))
    return Image.fromarray(np.ascontiguousarray(arr))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: transparency composited on white, 16-bit/float rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _white_composite(img)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img))).convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return _white_composite(img)
    return img.convert("RGB")


def load_image(src: ImageInput) -> Image.Image:
    """Load ``src`` (path, bytes, file object, numpy array or PIL image) as an RGB PIL image.

    Raises :class:`ImageLoadError` (a ValueError) naming the source when the file is missing,
    not an image, corrupt or truncated.
    """
    if isinstance(src, Image.Image):
        try:
            with _strict_decoding():
                src.load()
        except Exception as err:
            raise ImageLoadError(f"could not decode {_describe(src)}: {err}.") from err
        return to_rgb(src)
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if torch.is_tensor(src):
        return _from_array(src.detach().cpu().numpy())
    what = _describe(src)
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise ImageLoadError(f"{what} does not exist; check the path (relative to {os.getcwd()!r}).")
    opened = io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray)) else src
    try:
        with _strict_decoding(), Image.open(opened) as img:
            img.load()
            rgb = to_rgb(img)
            if rgb is img:
                rgb = img.copy()
    except Exception as err:
        raise ImageLoadError(
            f"could not decode {what}: {type(err).__name__}: {err}. The file is corrupt, "
            "truncated or not an image; re-download or re-encode it, or drop it from the data."
        ) from err
    return rgb


class AkiImageProcessor:
    """Resize (square, aspect squashed, antialiased bicubic), rescale 1/255, normalise.

    Transformers-style: ``__call__(images) -> BatchFeature(pixel_values=[N, 3, H, W])``,
    ``save_pretrained(dir)`` / ``from_pretrained(dir)`` through ``preprocessor_config.json``.
    """

    config_name = "preprocessor_config.json"

    def __init__(
        self,
        size: int | Sequence[int] | dict[str, int] = 384,
        resample: str | int = "bicubic",
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        rescale_factor: float = 1 / 255,
        **_: Any,
    ) -> None:
        if isinstance(size, dict):
            height, width = int(size["height"]), int(size["width"])
        elif isinstance(size, int):
            height = width = int(size)
        else:
            height, width = (int(s) for s in size)
        if isinstance(resample, int):  # a PIL enum value, as in transformers' configs
            resample = next((k for k, v in _RESAMPLE.items() if int(v) == resample), str(resample))
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}; got {resample!r}.")
        self.size = {"height": height, "width": width}
        self.resample = resample
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(s) for s in image_std]
        self.rescale_factor = float(rescale_factor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": type(self).__name__,
            "size": dict(self.size),
            "resample": self.resample,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "rescale_factor": self.rescale_factor,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AkiImageProcessor) and self.to_dict() == other.to_dict()

    def preprocess_one(self, image: ImageInput) -> torch.Tensor:
        """One image to a normalised float tensor ``[3, H, W]``."""
        rgb = load_image(image)
        h, w = self.size["height"], self.size["width"]
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), resample=_RESAMPLE[self.resample])
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        pixels = pixels.float() * self.rescale_factor
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        std = torch.tensor(self.image_std).view(3, 1, 1)
        return (pixels - mean) / std

    def __call__(self, images: ImageInput | Sequence[ImageInput], return_tensors: str | None = "pt"):
        """Images (one or a list) to ``BatchFeature(pixel_values=[N, 3, H, W])``."""
        from transformers import BatchFeature

        if not isinstance(images, (list, tuple)):
            images = [images]
        h, w = self.size["height"], self.size["width"]
        if images:
            pixels = torch.stack([self.preprocess_one(img) for img in images])
        else:
            pixels = torch.zeros(0, 3, h, w)
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)

    preprocess = __call__

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        import json

        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        out = path / self.config_name
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> AkiImageProcessor:
        import json

        path = Path(directory) / cls.config_name
        if not path.is_file():
            raise FileNotFoundError(f"no {cls.config_name} in {os.fspath(directory)!r}.")
        config = json.loads(path.read_text())
        config.pop("image_processor_type", None)
        return cls(**config)


_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


__all__ = ["AkiImageProcessor", "ImageLoadError", "load_image", "to_rgb"]
