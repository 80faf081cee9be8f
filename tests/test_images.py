"""Image decoding, validation, mode conversion, resizing and colour preservation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from nst.color import keep_content_colors, match_color
from nst.errors import ImageError
from nst.images import MIN_SIDE, load_image, resize_longest, save_image, to_pil, to_tensor
from tests.conftest import make_image


def _png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    image = make_image(40, 30).convert("RGBA" if mode in ("LA", "RGBA") else "RGB")
    if mode == "I;16":
        source = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    elif mode in ("I", "F"):
        source = image.convert("L").convert(mode)
    else:
        source = image.convert(mode)
    result = load_image(source)
    assert result.mode == "RGB" and result.size == (40, 30)


def test_sixteen_bit_is_rescaled_not_clipped():
    array = np.full((20, 20), 65535, dtype=np.uint16)
    array[:10] = 32896  # half range
    result = np.asarray(load_image(Image.fromarray(array)))
    assert result[15, 0, 0] == 255 and result[0, 0, 0] == 128


def test_transparent_pixels_go_on_white():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert load_image(rgba).getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = make_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    assert load_image(buffer.getvalue()).size == (20, 40)


def test_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"\x00\x01 definitely not a picture")


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_truncated_file_is_refused():
    data = _png_bytes(make_image(64, 64), "JPEG")
    with pytest.raises(ImageError, match="truncated|damaged"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused():
    # a tiny PNG header that claims a 20000x20000 image
    bomb = Image.new("L", (20000, 20000))
    data = _png_bytes(bomb)
    with pytest.raises(ImageError, match="too large"):
        load_image(data)


def test_tiny_image_is_refused():
    with pytest.raises(ImageError, match=str(MIN_SIDE)):
        load_image(make_image(8, 40))


def test_max_side_bounds_and_exact_size_is_untouched():
    image = make_image(100, 50)
    assert load_image(image, max_side=64).size == (64, 32)
    assert resize_longest(image, 100) is image
    assert resize_longest(image, 50).size == (50, 25)


def test_tensor_round_trip_and_save(tmp_path):
    image = make_image(33, 17)
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 17, 33) and tensor.is_contiguous()
    assert np.array_equal(np.asarray(to_pil(tensor)), np.asarray(image))
    png = save_image(image, tmp_path / "out.png")
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(image))
    assert save_image(image, tmp_path / "out.jpg").exists()
    with pytest.raises(ImageError, match=".png or .jpg"):
        save_image(image, tmp_path / "out.gifx")


def test_keep_content_colors_takes_luminance_from_the_stylised_image():
    content, stylised = make_image(32, 32, seed=1), make_image(32, 32, seed=2)
    out = keep_content_colors(content, stylised)
    y_out, cb_out, _ = [np.asarray(c, dtype=int) for c in out.convert("YCbCr").split()]
    y_sty, _, _ = [np.asarray(c, dtype=int) for c in stylised.convert("YCbCr").split()]
    y_con, cb_con, _ = [np.asarray(c, dtype=int) for c in content.convert("YCbCr").split()]
    # equal up to the gamut clipping of the RGB round trip; far from the other image's channels
    assert np.abs(y_out - y_sty).mean() < 5 < np.abs(y_out - y_con).mean()
    assert np.abs(cb_out - cb_con).mean() < 5


def test_match_color_moves_mean_and_covariance():
    source = to_tensor(make_image(48, 48, seed=3))
    target = to_tensor(make_image(48, 48, seed=4)) * 0.5 + 0.2
    matched = match_color(source, target)
    flat_m, flat_t = matched.reshape(3, -1), target.reshape(3, -1)
    assert torch.allclose(flat_m.mean(1), flat_t.mean(1), atol=2e-3)
    assert torch.allclose(torch.cov(flat_m), torch.cov(flat_t), atol=2e-3)
