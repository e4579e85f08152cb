"""Serving private files: originals to their uploader and staff, downloads to their owner.

Django streams the file, or, with settings.PRIVATE_ACCEL_REDIRECT set (production behind nginx),
answers with an `X-Accel-Redirect` header naming the file under that internal location and lets
nginx send it. Anyone else gets a 404 (an original's existence is not revealed, not even by a 403).
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from labeling.models import Photo
from privacy import audit
from privacy.files import resolve
from privacy.models import AuditAction, FileStore


def private_file_response(name: str, *, content_type: str, download_name: str | None = None) -> HttpResponse:
    """The file `name` (relative to PRIVATE_ROOT), or 404 when it is not there."""
    try:
        path = resolve(FileStore.PRIVATE, name)
    except ValueError:
        raise Http404("No such file.") from None
    if not path.is_file():
        raise Http404("No such file.")
    disposition = f'attachment; filename="{download_name}"' if download_name else "inline"
    prefix = settings.PRIVATE_ACCEL_REDIRECT
    if prefix:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + Path(name).as_posix().lstrip("/")
        response["Content-Disposition"] = disposition
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
        response["Content-Disposition"] = disposition
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def original_response(request, pk: int) -> HttpResponse:
    user = request.user
    photo = Photo.objects.filter(pk=pk).only("pk", "owner_id", "image").first()
    if photo is None or not photo.image or not user.is_authenticated:
        raise Http404("No such photo.")
    if photo.owner_id != user.pk and not user.is_staff:
        raise Http404("No such photo.")
    if photo.owner_id != user.pk:
        audit.record(AuditAction.ORIGINAL_VIEWED, actor=user, subject_user_id=photo.owner_id, photo_id=photo.pk)
    return private_file_response(photo.image.name, content_type="image/jpeg")


class OriginalView(APIView):
    """GET the original of a photo: its uploader and staff only (session or token); 404 for anyone else."""

    permission_classes = [AllowAny]

    @extend_schema(summary="The original of one of my photos (staff: any photo)",
                   responses={(200, "image/jpeg"): bytes, 404: OpenApiResponse(description="Not yours, or no such photo.")})
    def get(self, request, pk: int):
        return original_response(request, pk)
