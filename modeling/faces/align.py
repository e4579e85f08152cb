"""Eye alignment and the APPA-REAL style margin crop."""

from __future__ import annotations

import math

from .types import Face

__all__ = ["eye_angle", "crop_geometry", "face_crop"]


def eye_angle(face: Face) -> float:
    """Angle in radians of the line from ``left_eye`` to ``right_eye`` (0 = level, image y down).

    0 when the eyes are missing or coincide.
    """
    le = face.keypoints.get("left_eye")
    re = face.keypoints.get("right_eye")
    if le is None or re is None:
        return 0.0
    dx, dy = re[0] - le[0], re[1] - le[1]
    if not (math.isfinite(dx) and math.isfinite(dy)) or math.hypot(dx, dy) < 1e-3:
        return 0.0
    return math.atan2(dy, dx)


def crop_geometry(face: Face, margin: float = 0.4) -> tuple[float, float, float, float]:
    """``(cx, cy, side, angle)`` of the crop square in the original image.

    Centre = centre of the face box; ``side = max(w, h) * (1 + 2 * margin)``; angle = eye line.
    """
    x, y, w, h = face.box
    side = max(w, h, 1.0) * (1.0 + 2.0 * margin)
    return x + w / 2.0, y + h / 2.0, side, eye_angle(face)


def face_crop(image, face: Face, margin: float = 0.4, size: int = 224):
    """Square RGB crop of ``size`` x ``size`` px around ``face``, rotated so the eyes are level.

    The square is centred on the face box, its side is the box's larger side plus ``margin``
    times that side on EVERY side (0.4 -> 1.8 x the face), which is the APPA-REAL ``_face.jpg``
    convention. Parts of the square outside the image are padded with BLACK (0, 0, 0), as in
    the APPA-REAL crops of faces near the border. Sampling is bicubic at the crop's native
    resolution, then an antialiased (Lanczos) resize to ``size``.
    """
    from PIL import Image

    from .pyramid import to_rgb_array

    if size <= 0:
        raise ValueError("size must be positive")
    if image.mode != "RGB":
        image = Image.fromarray(to_rgb_array(image))
    cx, cy, side, angle = crop_geometry(face, margin)
    if not all(math.isfinite(v) for v in (cx, cy, side, angle)):
        return Image.new("RGB", (size, size))
    native = int(min(max(round(side), size), 8192))
    s = side / native  # source pixels per native-crop pixel
    cos, sin = math.cos(angle), math.sin(angle)
    a, b = s * cos, -s * sin
    d, e = s * sin, s * cos
    half = native / 2.0
    c = cx - a * half - b * half
    f = cy - d * half - e * half
    out = image.transform((native, native), Image.Transform.AFFINE, (a, b, c, d, e, f),
                          resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    if native != size:
        out = out.resize((size, size), Image.Resampling.LANCZOS)
    return out
