"""New photos: validate and normalise the file, find exactly one face, store original and face crop.

Everything that can refuse an upload runs before anything is written; the database rows and both
files are written in one transaction, and the files are removed again if that transaction fails.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from labeling.imaging import CropBox, ImageRejected, apply_crop, encode_jpeg, normalise_image, read_limited
from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile

logger = logging.getLogger(__name__)

# Faces much smaller than the main one (people far behind the subject) do not make a photo
# "several people"; anything at least this fraction of the main face's size does.
SECONDARY_FACE_RATIO = 0.35
MIN_FACE_CONFIDENCE = 0.9


class UploadRejected(ValueError):
    """A reason to refuse an upload, tied to the form field it concerns."""

    def __init__(self, field: str, message: str, code: str = "invalid"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PreparedPhoto:
    image: Image.Image
    face: object  # modeling.faces.Face
    face_crop: Image.Image


def ensure_profile(user) -> PlayerProfile:
    profile, _ = PlayerProfile.objects.get_or_create(user=user)
    return profile


def _faces_for_subject(faces):
    """The faces that count: confident ones, ignoring tiny background faces."""
    confident = [f for f in faces if f.confidence >= MIN_FACE_CONFIDENCE]
    if not confident:
        return []
    main_side = max(max(f.box[2], f.box[3]) for f in confident)
    return [f for f in confident if max(f.box[2], f.box[3]) >= SECONDARY_FACE_RATIO * main_side]


def prepare_photo(fileobj, crop_box: CropBox | None = None) -> PreparedPhoto:
    """All the checks and image work of an upload, with no side effects. Raises UploadRejected."""
    from modeling.faces import detect, face_crop, largest_face

    cfg = settings.APPAREAL
    try:
        data = read_limited(fileobj, cfg["UPLOAD_MAX_BYTES"])
        image = normalise_image(data, max_pixels=cfg["UPLOAD_MAX_PIXELS"])
        image = apply_crop(image, crop_box)
    except ImageRejected as exc:
        field = "crop" if exc.code == "crop" else "image"
        raise UploadRejected(field, exc.message, exc.code) from None
    if max(image.size) > cfg["UPLOAD_MAX_SIDE"]:
        image.thumbnail((cfg["UPLOAD_MAX_SIDE"], cfg["UPLOAD_MAX_SIDE"]), Image.Resampling.LANCZOS)

    faces = _faces_for_subject(detect(image, try_rotations=True))
    if not faces:
        raise UploadRejected(
            "image", "We could not find a face in this photo. Upload a clear photo of one person's face.", "no_face"
        )
    if len(faces) > 1:
        raise UploadRejected(
            "image",
            f"We found {len(faces)} faces. Crop the photo to one person and upload again.",
            "several_faces",
        )
    face = largest_face(faces)
    crop = face_crop(image, face, margin=cfg["FACE_CROP_MARGIN"], size=cfg["FACE_CROP_SIZE"])
    return PreparedPhoto(image=image, face=face, face_crop=crop)


def validate_real_age(real_age) -> int:
    text = "" if real_age is None or isinstance(real_age, bool) else str(real_age).strip()
    if not re.fullmatch(r"[+-]?\d{1,4}", text):
        raise UploadRejected("real_age", "Enter the person's age as a whole number of years (0 to 100).", "invalid")
    value = int(text)
    if not 0 <= value <= 100:
        raise UploadRejected("real_age", "The age must be a whole number from 0 to 100.", "range")
    return value


def create_photo(
    *,
    owner,
    image,
    real_age,
    consent: bool,
    consent_export: bool = False,
    consent_training: bool = False,
    crop_box: CropBox | None = None,
    date_taken: dt.date | None = None,
    show_real_age: bool = True,
    source: str = PhotoSource.UPLOAD,
    import_key: str = "",
    is_simulated: bool = False,
) -> Photo:
    """Accept one photo into the voting pool, or raise UploadRejected having written nothing.

    `consent` (the game) is required; research exports and model training are opt-in scopes
    (docs/privacy.md)."""
    if consent is not True:
        raise UploadRejected(
            "consent", "Confirm that you may share this photo and that players may guess its age before uploading.",
            "required",
        )
    for field, value in (("consent_export", consent_export), ("consent_training", consent_training)):
        if not isinstance(value, bool):
            raise UploadRejected(field, "Answer yes or no.", "invalid")
    age = validate_real_age(real_age)
    if date_taken is not None and date_taken > dt.date.today():
        raise UploadRejected("date_taken", "The date taken cannot be in the future.", "future")
    prepared = prepare_photo(image, crop_box)

    photo = Photo(
        owner=owner,
        source=source,
        import_key=import_key,
        real_age=age,
        width=prepared.image.width,
        height=prepared.image.height,
        date_taken=date_taken,
        consent=True,
        consent_export=consent_export,
        consent_training=consent_training,
        show_real_age=show_real_age,
        face=prepared.face.to_dict(),
        is_simulated=is_simulated,
        shuffle_key=random.random(),
    )
    photo.image.save("original.jpg", ContentFile(encode_jpeg(prepared.image)), save=False)
    photo.face_image.save("face.jpg", ContentFile(encode_jpeg(prepared.face_crop, quality=95)), save=False)
    written = [photo.image.name, photo.face_image.name]
    try:
        with transaction.atomic():
            photo.save()
            profile = ensure_profile(owner)
            if source == PhotoSource.UPLOAD and profile.kind == PlayerKind.HUMAN:
                from leaderboard.services.awards import award_upload_points

                award_upload_points(photo)
            transaction.on_commit(lambda: _queue_prediction(photo.pk))
    except Exception:
        for name in written:
            photo.image.storage.delete(name)
        raise
    return photo


def _queue_prediction(photo_id: int) -> None:
    """Ask the model for this photo's ages; a broker outage must not fail the upload."""
    from modelhub.tasks import predict_photos

    try:
        predict_photos.delay([photo_id])
    except Exception:  # noqa: BLE001 - the back-fill command catches up later
        logger.warning("could not queue the prediction of photo %s; the back-fill will do it", photo_id, exc_info=True)
