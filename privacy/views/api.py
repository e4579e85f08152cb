"""The privacy API: my data download, my erasure, a photo's consent and lineage; staff: the audit
log and the report of models trained on photos withdrawn since. Views validate, call one service
or selector, and answer."""
from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from appareal_site.api import error
from labeling.models import Photo
from privacy import selectors
from privacy.models import AuditEvent, DataDownload, DownloadStatus
from privacy.services import consent, downloads, reauth
from privacy.services.downloads import mark_fetched
from privacy.services.erasure import ErasureRefused
from privacy.services.retrain import RetrainRefused, retrain_without_withdrawn
from privacy.services.withdrawal import WithdrawalRefused
from privacy.views.files import private_file_response


class DownloadSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DataDownload
        fields = ["id", "status", "size_bytes", "counts", "error", "created_at", "finished_at", "expires_at", "download_url"]

    def get_download_url(self, obj) -> str | None:
        return reverse("api-me-export-file", args=[obj.pk]) if obj.status == DownloadStatus.READY else None


def _zip(download: DataDownload, user):
    mark_fetched(download, user=user)
    return private_file_response(download.file, content_type="application/zip",
                                 download_name=f"appareal-my-data-{download.created_at:%Y%m%d}-{download.pk}.zip")


class MyDataExportView(APIView):
    """GET: my personal-data zip (built now for a small account; for a large one 202 until the job
    has built it: ask again). POST: build a new one (after my data changed)."""

    @extend_schema(summary="Download my personal data (zip)", operation_id="me_export_latest",
                   responses={(200, "application/zip"): bytes, 202: DownloadSerializer,
                              409: OpenApiResponse(description="The last build failed; POST to try again.")})
    def get(self, request):
        latest = selectors.latest_download(request.user)
        if latest is not None and latest.status == DownloadStatus.READY and downloads.is_large(request.user):
            return _zip(latest, request.user)
        if latest is None or latest.status in (DownloadStatus.READY, DownloadStatus.FAILED):
            latest = downloads.request_download(user=request.user)
        if latest.status == DownloadStatus.READY:
            return _zip(latest, request.user)
        if latest.status == DownloadStatus.FAILED:
            return error(f"Building your data failed: {latest.error}. POST to try again.", status.HTTP_409_CONFLICT)
        return Response(DownloadSerializer(latest).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Build a new personal-data zip", request=None,
                   responses={201: DownloadSerializer, 202: DownloadSerializer})
    def post(self, request):
        download = downloads.request_download(user=request.user)
        code = status.HTTP_201_CREATED if download.status == DownloadStatus.READY else status.HTTP_202_ACCEPTED
        return Response(DownloadSerializer(download).data, status=code)


class MyDataExportFileView(APIView):
    @extend_schema(summary="One of my personal-data zips", operation_id="me_export_file",
                   responses={(200, "application/zip"): bytes, 404: OpenApiResponse(description="Not yours, or no such download."),
                              410: OpenApiResponse(description="Expired: its file is deleted.")})
    def get(self, request, pk: int):
        download = selectors.downloads_of(request.user).filter(pk=pk).first()
        if download is None:
            raise Http404("No such download.")
        if download.status == DownloadStatus.EXPIRED:
            return error("This download has expired and its file is deleted; ask for a new one.", status.HTTP_410_GONE)
        if download.status != DownloadStatus.READY:
            return error(f"This download is {download.status}.", status.HTTP_409_CONFLICT)
        return _zip(download, request.user)


class EraseRequestSerializer(serializers.Serializer):
    password = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=4096,
                                     help_text="Your password. Accounts without one (social log-in only) leave it "
                                               "out and get a confirmation link by e-mail.")


class MyErasureView(APIView):
    @extend_schema(summary="Delete my account and everything it holds", request=EraseRequestSerializer,
                   responses={202: inline_serializer("ErasureStarted", {"detail": serializers.CharField()}),
                              400: OpenApiResponse(description="No password given, or no e-mail to confirm by."),
                              403: OpenApiResponse(description="Wrong password, or a staff account.")})
    def post(self, request):
        form = EraseRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        password = form.validated_data.get("password")
        user = request.user
        try:
            if password or user.has_usable_password():
                if not password:
                    return Response({"password": ["Enter your password to confirm."]}, status=status.HTTP_400_BAD_REQUEST)
                reauth.erase_with_password(user=user, password=password)
            else:
                address = reauth.send_erasure_link(
                    user=user, link_for=lambda token: request.build_absolute_uri(reverse("erase_confirm", args=[token])))
                return Response({"detail": f"We sent a confirmation link to {address}. Open it while logged in to "
                                           "delete your account."}, status=status.HTTP_202_ACCEPTED)
        except ErasureRefused as exc:
            return error(exc.message, exc.status)
        return Response({"detail": "Your account is locked and is being erased: its tokens and sessions no longer "
                                   "work, and everything it holds is being deleted."}, status=status.HTTP_202_ACCEPTED)


class ConsentSerializer(serializers.Serializer):
    export = serializers.BooleanField(required=False, help_text="Research dataset exports.")
    training = serializers.BooleanField(required=False, help_text="Training the site's age models.")


def _consent_of(photo: Photo) -> dict:
    return {"id": photo.pk, "game": photo.consent, "export": photo.consent_export, "training": photo.consent_training,
            "changed_at": photo.consent_changed_at, "status": photo.status}


def _own_photo(request, pk: int) -> Photo:
    photo = Photo.objects.filter(pk=pk).first()
    if photo is None or (photo.owner_id != request.user.pk and not request.user.is_staff):
        raise Http404("No such photo.")
    return photo


ConsentOut = inline_serializer("PhotoConsent", {
    "id": serializers.IntegerField(), "game": serializers.BooleanField(), "export": serializers.BooleanField(),
    "training": serializers.BooleanField(), "changed_at": serializers.DateTimeField(allow_null=True),
    "status": serializers.CharField()})


class PhotoConsentView(APIView):
    """A photo's consent scopes: its uploader (and staff, read-only) may see them; only the uploader changes them.
    Withdrawing from the game is deleting the photo (DELETE /api/photos/{id}/)."""

    @extend_schema(summary="My photo's consent scopes", responses={200: ConsentOut})
    def get(self, request, pk: int):
        return Response(_consent_of(_own_photo(request, pk)))

    @extend_schema(summary="Change my photo's consent scopes", request=ConsentSerializer,
                   responses={200: ConsentOut, 400: OpenApiResponse(description="Nothing or a non-boolean given."),
                              403: OpenApiResponse(description="Not the uploader."),
                              409: OpenApiResponse(description="The photo is deleted.")})
    def patch(self, request, pk: int):
        if "game" in request.data or "consent" in request.data:
            return error("Withdrawing from the game is deleting the photo: DELETE /api/photos/{id}/.")
        form = ConsentSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            photo = consent.change_consent(user=request.user, photo_id=_own_photo(request, pk).pk, **form.validated_data)
        except WithdrawalRefused as exc:
            return error(exc.message, exc.status)
        return Response(_consent_of(photo))


class PhotoLineageView(APIView):
    @extend_schema(summary="Which dataset exports and model versions held this photo (its uploader and staff)",
                   responses={200: inline_serializer("PhotoLineage", {
                       "photo": serializers.IntegerField(), "exports": serializers.ListField(child=serializers.DictField()),
                       "models": serializers.ListField(child=serializers.DictField())})})
    def get(self, request, pk: int):
        photo = _own_photo(request, pk)
        lineage = selectors.photo_lineage([photo.pk])[photo.pk]
        return Response({"photo": photo.pk, **lineage})


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "action", "actor_id", "actor_is_staff", "subject_user_id", "photo_id", "export_id", "details"]


class AuditLogView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(summary="The audit log (staff), newest first; ?user=ID&photo=ID&action=NAME",
                   responses={200: AuditEventSerializer(many=True)})
    def get(self, request):
        try:
            user_id = int(request.query_params["user"]) if request.query_params.get("user") else None
            photo_id = int(request.query_params["photo"]) if request.query_params.get("photo") else None
        except ValueError:
            return error("user and photo are ids (whole numbers).")
        if (user_id or 0) > 2**62 or (photo_id or 0) > 2**62:
            return error("No such id.")
        events = selectors.audit_events(user_id=user_id, photo_id=photo_id, action=request.query_params.get("action", ""))
        return Response(AuditEventSerializer(events[:500], many=True).data)


class WithdrawnModelsView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(summary="Model versions trained on photos withdrawn since (staff)",
                   responses={200: inline_serializer("ModelsOnWithdrawnPhotos", {
                       "id": serializers.IntegerField(), "name": serializers.CharField(),
                       "is_active": serializers.BooleanField(), "export_id": serializers.IntegerField(),
                       "withdrawn_photos": serializers.IntegerField()}, many=True)})
    def get(self, request):
        return Response(selectors.models_on_withdrawn_photos())


class RetrainWithoutWithdrawnView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(summary="Retrain a model without the photos withdrawn since (staff): a new run on a fresh "
                           "training export", request=None,
                   responses={202: inline_serializer("RetrainQueued", {"run": serializers.IntegerField()}),
                              404: OpenApiResponse(description="No such model version."),
                              409: OpenApiResponse(description="Another training run is open.")})
    def post(self, request, pk: int):
        try:
            run = retrain_without_withdrawn(user=request.user, version_id=pk)
        except RetrainRefused as exc:
            return error(exc.message, exc.status)
        return Response({"run": run.pk}, status=status.HTTP_202_ACCEPTED)
