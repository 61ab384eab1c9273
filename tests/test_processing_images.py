"""Image loading (modes, sources, corrupt files) and the vision transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from aki.processing import AkiImageProcessor, ImageLoadError, load_image


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _noise(size=(64, 48), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_rgba_composited_on_white():
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red, fully transparent
    arr[0, 0] = (0, 0, 0, 255)  # opaque black
    arr[0, 1] = (0, 0, 0, 128)  # half-transparent black
    out = np.asarray(load_image(Image.fromarray(arr)))
    assert out.shape == (4, 4, 3)
    assert tuple(out[1, 1]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert 120 <= out[0, 1, 0] <= 135


def test_la_and_palette_transparency_on_white():
    la = Image.fromarray(np.stack([np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)], -1))
    la = la.convert("LA") if la.mode != "LA" else la
    assert tuple(np.asarray(load_image(la))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    pal.putpixel((1, 1), 1)
    pal.info["transparency"] = 0
    pal = Image.open(io.BytesIO(_png_bytes(pal)))  # through a real PNG tRNS chunk
    out = np.asarray(load_image(pal))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (200, 100, 50)


def test_grayscale_cmyk_and_bilevel():
    gray = Image.new("L", (3, 3), 77)
    assert tuple(np.asarray(load_image(gray))[1, 1]) == (77, 77, 77)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))
    assert tuple(np.asarray(load_image(cmyk))[0, 0]) == (255, 0, 0)
    assert load_image(Image.new("1", (3, 3), 1)).mode == "RGB"


def test_sixteen_bit_and_float_rescaled():
    arr16 = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    img16 = Image.open(io.BytesIO(_png_bytes(Image.fromarray(arr16))))
    assert img16.mode.startswith("I")
    out = np.asarray(load_image(img16))[..., 0]
    assert out.tolist() == [[0, 100], [255, 200]]
    f = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32))
    assert f.mode == "F"
    assert np.asarray(load_image(f))[..., 0].tolist() == [[0, 128], [255, 64]]
    # numpy inputs: uint16, float [0, 1], CHW
    assert np.asarray(load_image(arr16))[..., 1].tolist() == [[0, 100], [255, 200]]
    chw = np.ones((3, 5, 6), dtype=np.float32)
    assert load_image(chw).size == (6, 5)


def test_sources_path_bytes_fileobj(tmp_path):
    img = _noise()
    data = _png_bytes(img)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    ref = np.asarray(img)
    for src in (path, str(path), data, io.BytesIO(data), img, ref):
        out = load_image(src)
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), ref)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_naming_file(tmp_path, fmt):
    data = _png_bytes(_noise((128, 96)), fmt)
    path = tmp_path / f"broken.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # someone else switched PIL to lenient: still refused
    try:
        with pytest.raises(ImageLoadError, match="broken") as info:
            load_image(path)
    finally:
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    assert isinstance(info.value, ValueError)
    assert "re-download or re-encode" in str(info.value)


def test_corrupt_missing_and_bad_array(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match=r"not_an_image\.jpg"):
        load_image(bad)
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="bytes"):
        load_image(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


def test_transform_matches_direct_pil_bicubic():
    proc = AkiImageProcessor(size=24)
    imgs = [_noise((50, 30), 1), _noise((17, 40), 2)]
    out = proc(imgs)["pixel_values"]
    assert out.shape == (2, 3, 24, 24) and out.dtype == torch.float32
    for img, got in zip(imgs, out, strict=True):
        ref = np.asarray(img.resize((24, 24), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        ref = (torch.from_numpy(ref).permute(2, 0, 1) - 0.5) / 0.5
        torch.testing.assert_close(got, ref)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0


def test_image_processor_config_round_trip(tmp_path):
    proc = AkiImageProcessor(size={"height": 20, "width": 30})
    assert proc.to_dict()["resample"] == "bicubic"
    assert proc.to_dict()["image_mean"] == [0.5, 0.5, 0.5]
    proc.save_pretrained(tmp_path)
    again = AkiImageProcessor.from_pretrained(tmp_path)
    assert again == proc
    img = _noise()
    torch.testing.assert_close(again(img)["pixel_values"], proc(img)["pixel_values"])
    assert again(img)["pixel_values"].shape == (1, 3, 20, 30)
    assert AkiImageProcessor(resample=3).resample == "bicubic"  # PIL enum value, as in HF configs
