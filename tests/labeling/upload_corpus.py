"""The bad-upload corpus of the foundation issue, generated in memory (no committed junk files)."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def portrait_bytes() -> bytes:
    return (PHOTOS / "upload_portrait.jpg").read_bytes()


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def portrait() -> Image.Image:
    return Image.open(PHOTOS / "upload_portrait.jpg").convert("RGB")


def truncated_jpeg() -> bytes:
    data = portrait_bytes()
    return data[: len(data) // 3]


def decompression_bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims 900 megapixels (the IDAT is a valid but short stream)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("P", (64, 64), i * 40) for i in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def svg_with_script() -> bytes:
    return (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<script>alert(document.cookie)</script><circle cx="50" cy="50" r="40"/></svg>'
    )


def png16_portrait() -> bytes:
    grey = (np.asarray(portrait().convert("L"), dtype=np.uint16) * 257).astype("<u2")
    image = Image.frombytes("I;16", grey.shape[::-1], grey.tobytes())
    return _encode(image, "PNG")


def cmyk_jpeg_portrait() -> bytes:
    return _encode(portrait().convert("CMYK"), "JPEG", quality=90)


def rgba_png_portrait() -> bytes:
    image = portrait().convert("RGBA")
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, 20, 20))
    image.putalpha(alpha)
    return _encode(image, "PNG")


def exif_rotated_portrait(orientation: int = 6) -> bytes:
    """The portrait stored sideways with an EXIF tag saying how to turn it upright, plus a GPS tag."""
    upright = portrait()
    # Orientation 6: the viewer must rotate 90 degrees clockwise, so store it turned counter-clockwise.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCamera"
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[0x8825] = gps
    return _encode(stored, "JPEG", quality=90, exif=exif.tobytes())


def no_face_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 320, dtype=np.float64)
    array = np.stack([np.tile(ramp, (240, 1)), np.tile(ramp[::-1], (240, 1)), np.full((240, 320), 128.0)], axis=-1)
    array += rng.normal(0, 6, array.shape)
    return _encode(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def several_faces_jpeg() -> bytes:
    return (PHOTOS / "upload_obama_and_biden.jpg").read_bytes()
