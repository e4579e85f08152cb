"""Face pipeline: MTCNN detection (PyTorch port, the ``mtcnn`` package's weights), eye alignment
and APPA-REAL style 40%-margin crops. Plain Python + torch, no Django.

Importing this package is cheap: torch and the weights are loaded on first use.

    from modeling.faces import detect, largest_face, face_crop
    faces = detect(pil_image)                  # list[Face], most confident first
    face = largest_face(faces)
    crop = face_crop(pil_image, face)          # 224x224 RGB, eyes level, 40% margin
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .types import KEYPOINT_NAMES, Face, largest_face

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .detector import FaceDetector

__all__ = [
    "Face",
    "FaceDetector",
    "KEYPOINT_NAMES",
    "detect",
    "detect_batch",
    "face_crop",
    "get_detector",
    "largest_face",
]


def get_detector(device=None) -> FaceDetector:
    """The process-wide :class:`FaceDetector` for ``device`` (created once, thread-safe, reused)."""
    from .detector import get_detector as _get

    return _get(device)


def detect(image: Image.Image, *, min_face_size: int = 20, try_rotations: bool = False,
           device=None) -> list[Face]:
    """Faces in a PIL image (any mode), most confident first; ``[]`` when there is none.

    Never raises on odd images (tiny, all-black, huge, grey, RGBA, 16-bit). With
    ``try_rotations``, an image without a face is tried again rotated by 90, 180 and 270 degrees;
    the faces of the best rotation are returned with ``Face.rotation`` set and coordinates mapped
    back to the input image. EXIF orientation is NOT applied here (do it before, e.g.
    ``PIL.ImageOps.exif_transpose``).
    """
    return get_detector(device).detect(image, min_face_size=min_face_size, try_rotations=try_rotations)


def detect_batch(images: Sequence[Image.Image], *, min_face_size: int = 20,
                 try_rotations: bool = False, device=None) -> list[list[Face]]:
    """:func:`detect` for many images at once (one PNet pass over all their pyramids)."""
    return get_detector(device).detect_batch(images, min_face_size=min_face_size,
                                             try_rotations=try_rotations)


def face_crop(image: Image.Image, face: Face, margin: float = 0.4, size: int = 224) -> Image.Image:
    """Aligned square crop: eyes level, ``margin`` of the face size on every side, ``size`` px.

    Outside the image the crop is padded with black. See :func:`modeling.faces.align.face_crop`.
    """
    from .align import face_crop as _crop

    return _crop(image, face, margin=margin, size=size)


def __getattr__(name):  # lazy: FaceDetector without importing torch at package import
    if name == "FaceDetector":
        from .detector import FaceDetector

        return FaceDetector
    raise AttributeError(name)
