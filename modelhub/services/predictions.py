"""Predictions of the active models on the players' photos, and the model player "DEX" whose
votes are the active apparent-age model's guesses."""
from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from PIL import Image, ImageOps

from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.services.votes import VoteRejected, cast_vote
from modelhub.models import ModelRole
from modelhub.registry import active_models, active_version, predict_faces
from modelhub.selectors import MODEL_PLAYER_USERNAME
from modelhub.services.runs import in_background_thread, runs_in_thread

logger = logging.getLogger(__name__)


def model_player():
    """The system player "DEX" whose votes are the active model's apparent-age predictions."""
    User = get_user_model()
    user = User.objects.filter(username=MODEL_PLAYER_USERNAME).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=MODEL_PLAYER_USERNAME, email="")
                user.set_unusable_password()
                user.save()
        except IntegrityError:
            user = User.objects.get(username=MODEL_PLAYER_USERNAME)
    profile, _ = PlayerProfile.objects.get_or_create(user=user, defaults={"kind": PlayerKind.MODEL})
    if profile.kind != PlayerKind.MODEL:
        PlayerProfile.objects.filter(pk=profile.pk).update(kind=PlayerKind.MODEL)
    return user


def _face_crop_of(photo) -> Image.Image:
    with photo.face_image.open("rb") as fh:
        image = Image.open(fh)
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.load()
    return image


def predict_photos(photo_ids, *, batch_size: int = 32, vote: bool = True) -> dict:
    """Predict apparent and real age of the photos with the active models, store them on the
    photos, and cast the model player's vote (its apparent-age guess) where it has none yet.
    No active model: nothing happens (the back-fill catches up later)."""
    ids = sorted({int(pk) for pk in photo_ids})
    models = active_models()
    if not models.any or not ids:
        return {"predicted": 0, "voted": 0, "skipped": len(ids), "reason": "no active model" if not models.any else ""}
    primary = models.primary
    predicted = voted = failed = 0
    player = model_player() if vote and models.apparent is not None else None
    for start in range(0, len(ids), batch_size):
        photos = list(Photo.objects.filter(pk__in=ids[start:start + batch_size]).exclude(face_image=""))
        crops, usable = [], []
        for photo in photos:
            try:
                crops.append(_face_crop_of(photo))
                usable.append(photo)
            except Exception:  # noqa: BLE001 - a missing file must not stop the batch
                logger.warning("photo %s: face crop unreadable; not predicted", photo.pk, exc_info=True)
                failed += 1
        results = predict_faces(models, crops)
        for photo, res in zip(usable, results):
            Photo.objects.filter(pk=photo.pk).update(
                predicted_apparent_age=res["apparent_age"], predicted_real_age=res["real_age"], predicted_by=primary)
            predicted += 1
            if player is not None and res["apparent_age"] is not None and photo.status == PhotoStatus.ACTIVE \
                    and photo.owner_id != player.pk:
                voted += _model_vote(player, photo.pk, res["apparent_age"])
    return {"predicted": predicted, "voted": voted, "failed": failed, "model_version": primary.pk}


def _model_vote(player, photo_id: int, apparent_age: float) -> int:
    if Vote.objects.filter(photo_id=photo_id, voter=player).exists():
        return 0
    try:
        cast_vote(voter=player, photo_id=photo_id, age=int(round(min(100.0, max(0.0, apparent_age)))))
    except VoteRejected:
        return 0
    return 1


def stale_photo_ids(*, all_photos: bool = False) -> list[int]:
    """Photos without a prediction of the current active model (or every photo)."""
    primary = active_version(ModelRole.APPARENT) or active_version(ModelRole.REAL)
    qs = Photo.objects.exclude(status=PhotoStatus.DELETED).exclude(face_image="")
    if not all_photos and primary is not None:
        qs = qs.exclude(predicted_by=primary)
    return list(qs.order_by("pk").values_list("pk", flat=True))


def backfill_predictions(*, all_photos: bool = False, batch_size: int = 64, on_progress=None, vote: bool = True) -> dict:
    ids = stale_photo_ids(all_photos=all_photos)
    totals = {"predicted": 0, "voted": 0, "failed": 0, "photos": len(ids)}
    for start in range(0, len(ids), batch_size):
        out = predict_photos(ids[start:start + batch_size], batch_size=batch_size, vote=vote)
        if out.get("reason"):
            totals["reason"] = out["reason"]
            break
        for key in ("predicted", "voted", "failed"):
            totals[key] += out.get(key, 0)
        if on_progress:
            on_progress(min(len(ids), start + batch_size), len(ids))
    return totals


def queue_stale_predictions() -> None:
    """After the active model changed: predict every photo again, in the background."""
    if runs_in_thread():
        in_background_thread("backfill-predictions", backfill_predictions)
        return
    # modelhub.tasks imports the services: imported here, where the task is queued, to break the cycle
    from modelhub.tasks import predict_stale_photos

    try:
        predict_stale_photos.delay()
    except Exception:  # noqa: BLE001 - the back-fill command can do it later
        logger.warning("could not queue the back-fill of predictions", exc_info=True)
