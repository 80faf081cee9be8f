"""Decode, validate, orient, convert, bound and save images; PIL <-> tensor conversion."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from nst.errors import ImageError

ImageSource = Union[str, Path, bytes, bytearray, Image.Image, np.ndarray]

MIN_SIDE = 16
"""Smallest accepted side in pixels: below this the deeper layers of every backbone vanish."""

MAX_PIXELS = 64_000_000
"""Largest accepted decoded image (pixels); bigger files are refused as decompression bombs."""


def load_image(source: ImageSource, max_side: int | None = None, what: str = "image") -> Image.Image:
    """Return an RGB PIL image from a path, bytes, PIL image or HxWxC array, validated and oriented.

    ``max_side`` bounds the longest side (downscaling only); ``what`` names the input in errors.
    """
    image = _open(source, what)
    image = ImageOps.exif_transpose(image)
    image = to_rgb(image)
    if min(image.size) < MIN_SIDE:
        raise ImageError(
            f"The {what} is {image.width}x{image.height} pixels; it needs at least "
            f"{MIN_SIDE} pixels on each side."
        )
    if max_side is not None and max(image.size) > max_side:
        image = resize_longest(image, max_side)
    return image


def _open(source: ImageSource, what: str) -> Image.Image:
    if isinstance(source, Image.Image):
        source.load()
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    if isinstance(source, (bytes, bytearray)):
        stream: io.BytesIO | Path = io.BytesIO(bytes(source))
        label = f"the uploaded {what}"
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"The {what} file '{path}' does not exist.")
        if path.is_dir():
            raise ImageError(f"'{path}' is a folder, not an image file.")
        stream = path
        label = f"'{path.name}'"
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            image = Image.open(stream)
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(
                f"{label} is too large to decode safely (more than {MAX_PIXELS:,} pixels). "
                "Resize it before using it."
            ) from None
        except UnidentifiedImageError:
            raise ImageError(f"{label} is not an image file PIL can read (PNG, JPEG, WebP, ...).") from None
        except OSError as exc:
            raise ImageError(f"{label} is damaged or truncated and cannot be decoded ({exc}).") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    return image


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"The {what} array has shape {array.shape}; expected HxW, HxWx3 or HxWx4.")
    if array.dtype != np.uint8:
        scale = 255.0 if array.dtype.kind == "f" and array.max(initial=0) <= 1.0 else 1.0
        if array.dtype == np.uint16:
            scale = 1 / 257.0
        array = np.clip(array.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0])
    return Image.fromarray(array)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to 8-bit RGB.

    Transparent pixels are composited over ``background``; 16-bit and float images are rescaled
    to 8 bits rather than clipped.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            values = values / 257.0
        elif mode == "I":
            values = values / 257.0 if values.max(initial=0) > 255 else values
        elif values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(values, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV, 1


def resize_longest(image: Image.Image, size: int) -> Image.Image:
    """Scale so the longest side equals ``size``; an image already that size is returned as is."""
    if size < MIN_SIDE:
        raise ImageError(f"The output size must be at least {MIN_SIDE} pixels, not {size}.")
    width, height = image.size
    if max(width, height) == size:
        return image
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(new_size, Image.Resampling.LANCZOS)


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize to exactly (width, height) unless the image already has that size."""
    return image if image.size == tuple(size) else image.resize(size, Image.Resampling.LANCZOS)


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB PIL image -> float tensor of shape 1x3xHxW in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """1x3xHxW or 3xHxW tensor in [0, 1] -> RGB PIL image (values are clamped)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def save_image(image: Image.Image, path: str | Path, quality: int = 95) -> Path:
    """Save as PNG or JPEG according to the suffix (PNG when there is none)."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, "JPEG", quality=quality)
    elif suffix == ".png":
        image.save(path, "PNG")
    else:
        raise ImageError(f"Cannot save '{path.name}': use a .png or .jpg file name.")
    return path
