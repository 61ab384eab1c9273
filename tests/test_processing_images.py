"""The one image loader (modes, declared bit depths, sizes, sources, bad files) and the release's
transform order (resize to the tower size first, then RGB with alpha dropped, then normalise)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from transformers import SiglipImageProcessorPil

from aki.processing import (
    MAX_PIXELS_ENV,
    AkiImageProcessor,
    AkiProcessor,
    ImageLoadError,
    ImageTooLargeError,
    build_tiny_tokenizer,
    load_image,
    siglip_image_processor,
)

SIZE = 24


def _encoded(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _noise(size=(64, 48), seed=0, channels=3) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8))


def _normalised(rgb: Image.Image) -> torch.Tensor:
    """The release's last steps written out: to [0, 1], then mean 0.5 / std 0.5."""
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def proc() -> AkiProcessor:
    return AkiProcessor(siglip_image_processor(SIZE), build_tiny_tokenizer("phi3"), num_image_tokens=2)


# ----------------------------------------------------------------------------- transform
def test_rgb_images_give_exactly_siglips_result(proc):
    imgs = [_noise((50, 30), 1), _noise((17, 40), 2), _noise((SIZE, SIZE), 3)]
    ours = proc.preprocess_images(imgs)
    siglip = SiglipImageProcessorPil(size={"height": SIZE, "width": SIZE})(imgs, return_tensors="pt")["pixel_values"]
    assert ours.shape == (3, 3, SIZE, SIZE) and ours.dtype == torch.float32
    assert torch.equal(ours, siglip)
    for img, got in zip(imgs, ours, strict=True):  # and it is the bicubic squash-resize of the paper
        torch.testing.assert_close(got, _normalised(img.resize((SIZE, SIZE), Image.Resampling.BICUBIC)))


def test_alpha_is_dropped_after_the_resize(proc):
    rgba = np.asarray(_noise((40, 30), 4, channels=4)).copy()
    rgba[:, :20, 3] = 0  # left half transparent, colours still stored under it
    img = Image.fromarray(rgba, mode="RGBA")
    got = proc.preprocess_images([img])[0]
    release = _normalised(img.resize((SIZE, SIZE), Image.Resampling.BICUBIC).convert("RGB"))
    torch.testing.assert_close(got, release)
    convert_first = _normalised(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    white = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB")
    composited = _normalised(white.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    assert (got - convert_first).abs().max() > 0.05  # the order matters, and the release's is used
    assert (got - composited).abs().max() > 0.5  # alpha is dropped, not composited on white


def test_palette_and_gray_images_follow_the_same_order(proc):
    pal = Image.new("P", (30, 20), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    for x in range(0, 30, 3):
        pal.putpixel((x, 5), 1)
    pal.info["transparency"] = 0
    pal = Image.open(io.BytesIO(_encoded(pal)))  # through a real PNG tRNS chunk
    gray = Image.fromarray(np.asarray(_noise((33, 21), 5))[..., 0])
    cmyk = _noise((26, 19), 6).convert("CMYK")
    got = proc.preprocess_images([pal, gray, cmyk])
    for img, out in zip([pal, gray, cmyk], got, strict=True):
        ref = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC).convert("RGB")  # Pillow: nearest for P
        torch.testing.assert_close(out, _normalised(ref))


def test_old_image_processor_name_builds_siglip(proc):
    old = AkiImageProcessor(size={"height": 20, "width": 30}, resample="bicubic")
    assert isinstance(old, SiglipImageProcessorPil)
    assert old.size == {"height": 20, "width": 30} and old.resample == 3
    assert list(old.image_mean) == [0.5, 0.5, 0.5] and list(old.image_std) == [0.5, 0.5, 0.5]
    img = _noise()
    assert torch.equal(old([img], return_tensors="pt")["pixel_values"],
                       SiglipImageProcessorPil(size={"height": 20, "width": 30})([img], return_tensors="pt")["pixel_values"])


# ----------------------------------------------------------------------------- modes kept
def test_loader_keeps_alpha_palette_and_gray():
    rgba = _noise(channels=4)
    assert load_image(Image.open(io.BytesIO(_encoded(rgba)))).mode == "RGBA"
    assert load_image(_encoded(Image.new("P", (3, 3), 0))).mode == "P"
    assert load_image(Image.new("LA", (3, 3))).mode == "LA"
    assert load_image(Image.new("1", (3, 3), 1)).mode == "1"


# ----------------------------------------------------------------------------- bit depth
def test_sixteen_bit_by_declared_range():
    arr16 = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    img16 = Image.open(io.BytesIO(_encoded(Image.fromarray(arr16))))
    assert img16.mode == "I;16"
    out = load_image(img16)
    assert out.mode == "L" and np.asarray(out).tolist() == [[0, 100], [255, 200]]
    # a dark 16-bit image stays dark: no per-image guess (max 200 of 65535 is about 1 of 255)
    dark = np.array([[0, 100], [200, 150]], dtype=np.uint16)
    assert np.asarray(load_image(_encoded(Image.fromarray(dark)))).tolist() == [[0, 0], [1, 1]]
    # one bright pixel changes nothing else
    bright = dark.copy()
    bright[0, 0] = 65535
    assert np.asarray(load_image(_encoded(Image.fromarray(bright))))[1].tolist() == [1, 1]
    # the same pixels through TIFF and 16-bit PGM (Pillow opens the PGM as mode I, 0..65535)
    for fmt in ("TIFF", "PPM"):
        again = Image.open(io.BytesIO(_encoded(Image.fromarray(arr16), fmt)))
        assert np.asarray(load_image(again)).tolist() == [[0, 100], [255, 200]], fmt


def test_float_and_undeclared_modes():
    f = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32))
    assert np.asarray(load_image(f)).tolist() == [[0, 128], [255, 64]]  # floats: [0, 1]
    over = Image.fromarray(np.array([[0.0, 2.0], [-1.0, np.nan]], dtype=np.float32))
    assert np.asarray(load_image(over)).tolist() == [[0, 255], [0, 0]]  # clipped, NaN -> 0
    declared = Image.fromarray(np.array([[0.0, 250.0], [500.0, 1000.0]], dtype=np.float32))
    tiff = Image.open(io.BytesIO(_encoded(declared, "TIFF", tiffinfo={340: 0.0, 341: 1000.0})))
    assert np.asarray(load_image(tiff)).tolist() == [[0, 64], [128, 255]]  # SMin/SMaxSampleValue
    raw32 = Image.fromarray(np.array([[0, 70000]], dtype=np.int32))
    assert raw32.mode == "I"
    with pytest.raises(ImageLoadError, match="declares no bit depth"):
        load_image(raw32)


def test_arrays_by_dtype():
    arr16 = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    assert np.asarray(load_image(arr16)).tolist() == [[0, 100], [255, 200]]
    assert np.asarray(load_image(np.array([[0.0, 1.0]], dtype=np.float64))).tolist() == [[0, 255]]
    assert load_image(np.ones((3, 5, 6), dtype=np.float32)).size == (6, 5)  # CHW
    assert load_image(np.zeros((5, 6, 4), dtype=np.uint8)).mode == "RGBA"
    assert load_image(torch.zeros(3, 4, 5)).size == (5, 4)
    with pytest.raises(ImageLoadError, match=r"int64.*uint8"):
        load_image(np.array([[0, 255]]))
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


# ----------------------------------------------------------------------------- size limit
@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return _encoded(Image.new("1", (20000, 20000)))  # valid, 400M pixels, 48 kB on disk


def test_large_valid_image_gets_its_own_message(tmp_path, huge_png, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png)
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    msg = str(info.value)
    assert "huge.png" in msg and "20000x20000" in msg and "400,000,000" in msg and "178,956,970" in msg
    assert "max_pixels=" in msg and MAX_PIXELS_ENV in msg
    assert "corrupt" not in msg and "truncated" not in msg
    assert info.value.pixels == 400_000_000 and isinstance(info.value, ImageLoadError)
    small = tmp_path / "small.png"
    small.write_bytes(_encoded(_noise((40, 30))))
    with pytest.raises(ImageTooLargeError, match="1,200 pixels, over the limit of 1,000"):
        load_image(small, max_pixels=1000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageTooLargeError):
        load_image(small)
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")  # no limit
    assert load_image(small).size == (40, 30)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        load_image(small)


def test_pillow_limit_is_replaced_and_restored(tmp_path):
    data = _encoded(_noise((64, 48)))
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000  # Pillow would refuse 3072 pixels as a "decompression bomb"
    try:
        assert load_image(data).size == (64, 48)
        assert Image.MAX_IMAGE_PIXELS == 1000
    finally:
        Image.MAX_IMAGE_PIXELS = old


# ----------------------------------------------------------------------------- sources, errors
def test_sources_path_bytes_fileobj(tmp_path):
    img = _noise()
    data = _encoded(img)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    ref = np.asarray(img)
    for src in (path, str(path), data, bytearray(data), io.BytesIO(data), img, ref):
        out = load_image(src)
        assert out.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(out), ref)
    with pytest.raises(ImageLoadError, match="URL"):
        load_image("https://example.com/cat.png")
    with pytest.raises(ImageLoadError, match="cannot load an image from a int"):
        load_image(3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_naming_file(tmp_path, fmt):
    data = _encoded(_noise((128, 96)), fmt)
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


def test_corrupt_and_missing(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match=r"not_an_image\.jpg"):
        load_image(bad)
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="bytes"):
        load_image(b"\x89PNG\r\n\x1a\n garbage")


# ----------------------------------------------------------------------------- call sites
def test_training_records_use_the_same_loader(tmp_path, huge_png, monkeypatch):
    from aki.data.records import BadRecord
    from aki.data.records import load_image as record_image

    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    rgba = _noise(channels=4)
    path = tmp_path / "a.png"
    path.write_bytes(_encoded(rgba))
    assert record_image(path).mode == "RGBA"  # as load_image: alpha left for the processor
    (tmp_path / "huge.png").write_bytes(huge_png)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for name, reason in (("missing.png", "missing_image"), ("huge.png", "image_too_large"), ("bad.png", "corrupt_image")):
        with pytest.raises(BadRecord) as info:
            record_image(tmp_path / name)
        assert info.value.reason == reason and name in str(info.value)


def test_chat_reports_a_bad_image_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from aki.cli.main import app
    from aki.testing import tiny_model

    model, processor = tiny_model("phi3")
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["chat", str(tmp_path / "m"), "What is it?", "--image", str(tmp_path / "bad.jpg")])
    assert result.exit_code == 1
    assert "aki chat: error: could not decode image file" in result.output and "bad.jpg" in result.output
    assert "Traceback" not in result.output
