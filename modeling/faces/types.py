"""The result type of the face pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the ORIGINAL input image.

    ``box`` is ``(x, y, w, h)``; ``keypoints`` maps ``left_eye``, ``right_eye``, ``nose``,
    ``mouth_left``, ``mouth_right`` to ``(x, y)``. "left"/"right" are as seen in the picture of an
    upright face (``left_eye`` is the eye on the image's left), as in the ``mtcnn`` package.
    ``rotation`` is the counter-clockwise rotation (0, 90, 180 or 270 degrees) the image needed for
    this face to be found; box and keypoints are already mapped back to the unrotated image.
    """

    box: tuple[float, float, float, float]
    confidence: float
    keypoints: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    rotation: int = 0

    @property
    def area(self) -> float:
        return max(0.0, self.box[2]) * max(0.0, self.box[3])

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``{box: [x, y, w, h], confidence, keypoints: {name: [x, y]}, rotation}``."""
        return {
            "box": [float(v) for v in self.box],
            "confidence": float(self.confidence),
            "keypoints": {k: [float(v[0]), float(v[1])] for k, v in self.keypoints.items()},
            "rotation": int(self.rotation),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Face:
        """Inverse of :meth:`to_dict`; also reads the ``mtcnn`` package's JSON (no ``rotation``)."""
        box = d["box"]
        if len(box) != 4:
            raise ValueError(f"box must have 4 numbers (x, y, w, h), got {box!r}")
        kps = d.get("keypoints") or {}
        return cls(
            box=tuple(float(v) for v in box),  # type: ignore[arg-type]
            confidence=float(d.get("confidence", 0.0)),
            keypoints={str(k): (float(v[0]), float(v[1])) for k, v in kps.items()},
            rotation=int(d.get("rotation", 0)),
        )


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box area (ties: the more confident one); ``None`` for no faces."""
    if not faces:
        return None
    return max(faces, key=lambda f: (f.area, f.confidence))
