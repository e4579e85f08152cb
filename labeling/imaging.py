"""Turning an uploaded file into a safe, upright, metadata-free RGB picture. Plain Python + Pillow.

The format is sniffed from the bytes (never the file name or the content type); only JPEG, PNG and
WebP are accepted; the pixel count is checked on the header before anything is decoded, so a small
file that claims huge dimensions (a decompression bomb) is refused without allocating it.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageRejected(ValueError):
    """The file cannot be accepted; `message` is meant for the person who uploaded it."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class CropBox:
    x: int
    y: int
    w: int
    h: int


def sniff_format(head: bytes) -> str | None:
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def read_limited(fileobj, max_bytes: int) -> bytes:
    """Read at most max_bytes (+1 to detect overflow) without trusting any declared size."""
    data = fileobj.read(max_bytes + 1)
    if not data:
        raise ImageRejected("The file is empty.", "empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"The file is larger than {max_bytes // (1024 * 1024)} MB.", "too_large")
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode Pillow decodes (alpha, palette, CMYK, 16-bit, float) to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        array = np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white: what a viewer shows on a light page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def normalise_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode, check and normalise: upright (EXIF orientation applied), RGB, no metadata."""
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ImageRejected("This is not an image we can read. Upload a JPEG, PNG or WebP photo.", "not_an_image")
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"{fmt} files are not accepted. Upload a JPEG, PNG or WebP photo.", "format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageRejected("The image has no pixels.", "empty")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"The image is {width}x{height} pixels; the limit is {max_pixels / 1e6:.0f} megapixels.",
                    "too_many_pixels",
                )
            if getattr(image, "n_frames", 1) > 1:
                raise ImageRejected("Animated images are not accepted. Upload a still photo.", "animated")
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("The image has too many pixels.", "too_many_pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageRejected("The image is damaged or incomplete and cannot be read.", "corrupt") from None

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not sink an otherwise fine photo
        pass
    image = _to_rgb(image)
    # A fresh image carries pixels only: no EXIF (GPS), ICC, XMP or comments survive.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    return clean


def apply_crop(image: Image.Image, box: CropBox | None, *, min_side: int = 20) -> Image.Image:
    """Crop to the user's box (coordinates in the upright image, as the browser showed it)."""
    if box is None:
        return image
    width, height = image.size
    if box.w <= 0 or box.h <= 0:
        raise ImageRejected("The crop box has zero size.", "crop")
    # One pixel of slack for rounding in the browser's crop tool.
    if box.x < -1 or box.y < -1 or box.x + box.w > width + 1 or box.y + box.h > height + 1:
        raise ImageRejected(f"The crop box lies outside the image ({width}x{height} pixels).", "crop")
    left, top = max(0, box.x), max(0, box.y)
    right, bottom = min(width, box.x + box.w), min(height, box.y + box.h)
    if right - left < min_side or bottom - top < min_side:
        raise ImageRejected(f"The crop box is too small (at least {min_side}x{min_side} pixels).", "crop")
    return image.crop((left, top, right, bottom))


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
