"""Images of a chat request: ``image_url`` parts to PIL images, within the server's limits.

A part is a base64 ``data:`` URL (what OpenAI clients, VLMEvalKit and lmms-eval send); remote
``http(s)`` URLs are fetched only when the server was started with ``--allow-remote-images``
(a server that fetches any URL it is given can be pointed at internal addresses). Decoding goes
through the project's one image loader, :func:`aki.processing.load_image`, with the server's
pixel limit; every failure is a 400 naming the part and the fix.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from dataclasses import dataclass

from PIL import Image

from aki.processing import ImageLoadError, ImageTooLargeError, load_image
from aki.serving.errors import bad_request


@dataclass(frozen=True)
class ImageLimits:
    """``max_bytes``: encoded size of one image; ``max_pixels``: its width x height;
    ``allow_remote``: fetch ``http(s)`` URLs (off by default); ``fetch_timeout_s``: per fetch."""

    max_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000
    allow_remote: bool = False
    fetch_timeout_s: float = 10.0


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def decode_data_url(url: str, limits: ImageLimits, param: str) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (whitespace in the payload tolerated)."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise bad_request(f"{param} is a data: URL without a ',' before its payload; send "
                          "'data:image/png;base64,<base64 bytes>'.", param=param, code="invalid_image_url")
    media_type, _, encoding = header.partition(";")
    if encoding.strip().lower() != "base64":
        raise bad_request(f"{param} is a data: URL that is not base64 encoded ({header!r}); send "
                          "'data:image/png;base64,<base64 bytes>'.", param=param, code="invalid_image_url")
    if media_type and not media_type.strip().lower().startswith("image/"):
        raise bad_request(f"{param} declares media type {media_type!r}; only images (image/png, image/jpeg, "
                          "...) are read.", param=param, code="invalid_image_url")
    payload = "".join(payload.split())
    if len(payload) * 3 // 4 > limits.max_bytes:
        raise bad_request(f"{param} holds about {_mib(len(payload) * 3 // 4)} of image data; this server takes "
                          f"at most {_mib(limits.max_bytes)} per image (--max-image-bytes). Send a smaller "
                          "image.", param=param, code="image_too_large")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise bad_request(f"{param} is not valid base64 ({err}); encode the image file's bytes with "
                          "standard base64.", param=param, code="invalid_base64") from None


def fetch_image(url: str, limits: ImageLimits, param: str) -> bytes:
    """The bytes at an ``http(s)`` URL, at most ``max_bytes`` (remote images must be enabled)."""
    if not limits.allow_remote:
        raise bad_request(f"{param} is a remote URL; this server does not fetch images. Send the image inline "
                          "as a base64 data: URL, or start the server with --allow-remote-images.",
                          param=param, code="remote_images_disabled")
    request = urllib.request.Request(url, headers={"User-Agent": "aki-serve"})
    try:
        with urllib.request.urlopen(request, timeout=limits.fetch_timeout_s) as response:
            data = response.read(limits.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise bad_request(f"{param}: could not fetch {url!r} ({err}); check the URL, or send the image inline "
                          "as a base64 data: URL.", param=param, code="image_fetch_failed") from None
    if len(data) > limits.max_bytes:
        raise bad_request(f"{param}: {url!r} is larger than {_mib(limits.max_bytes)} (--max-image-bytes); "
                          "send a smaller image.", param=param, code="image_too_large")
    return data


def image_from_url(url: str, limits: ImageLimits, param: str) -> Image.Image:
    """Decode one ``image_url`` to a fully loaded PIL image, or raise a 400 naming ``param``."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        raw = decode_data_url(url, limits, param)
    elif scheme in ("http", "https"):
        raw = fetch_image(url, limits, param)
    else:
        raise bad_request(f"{param} must be a base64 data: URL ('data:image/png;base64,...')"
                          + (" or an http(s) URL" if limits.allow_remote else "")
                          + f"; got {'a ' + scheme + ': URL' if scheme else 'no URL scheme'}.",
                          param=param, code="invalid_image_url")
    try:
        return load_image(raw, max_pixels=limits.max_pixels)
    except ImageTooLargeError as err:
        raise bad_request(f"{param}: {err} This server takes at most {limits.max_pixels:,} pixels per image "
                          "(--max-image-pixels).", param=param, code="image_too_large") from None
    except ImageLoadError as err:
        raise bad_request(f"{param} could not be read as an image: {err}", param=param,
                          code="invalid_image") from None


__all__ = ["ImageLimits", "decode_data_url", "fetch_image", "image_from_url"]
