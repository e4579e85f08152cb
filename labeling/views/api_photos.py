"""API for uploading, listing, deleting, reporting and moderating photos."""
from __future__ import annotations

from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from appareal_site.api import error
from labeling.imaging import CropBox
from labeling.models import Photo, PhotoReport
from labeling.selectors.photos import photos_of, visible_photo
from labeling.services import moderation
from labeling.services.uploads import UploadRejected, create_photo
from labeling.throttling import UploadThrottle
from labeling.views.voting import PhotoDetailView
from privacy.services import withdrawal


class PhotoUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="JPEG, PNG or WebP; at most 10 MB and 40 megapixels.")
    real_age = serializers.IntegerField(min_value=0, max_value=100, help_text="Real age in whole years.")
    consent = serializers.BooleanField(
        help_text="Required, must be true: the uploader may share the photo, and players may see its face crop "
        "and guess the age (the game)."
    )
    consent_export = serializers.BooleanField(
        required=False, default=False,
        help_text="Opt-in (default false): the photo may go into research dataset exports.",
    )
    consent_training = serializers.BooleanField(
        required=False, default=False,
        help_text="Opt-in (default false): the photo may be used to train the site's age models.",
    )
    date_taken = serializers.DateField(required=False, allow_null=True)
    show_real_age = serializers.BooleanField(required=False, default=True)
    crop_x = serializers.FloatField(required=False)
    crop_y = serializers.FloatField(required=False)
    crop_w = serializers.FloatField(required=False)
    crop_h = serializers.FloatField(required=False)

    def validate_consent(self, value):
        if not value:
            raise serializers.ValidationError("Confirm that you may share this photo and that players may guess its "
                                              "age (consent=true).")
        return value

    def validate(self, attrs):
        keys = ("crop_x", "crop_y", "crop_w", "crop_h")
        given = [k for k in keys if k in attrs]
        if given and len(given) != 4:
            raise serializers.ValidationError({"crop": "Give all of crop_x, crop_y, crop_w and crop_h, or none."})
        attrs["crop_box"] = CropBox(*(int(round(attrs.pop(k))) for k in keys)) if given else None
        return attrs


class OwnPhotoSerializer(serializers.ModelSerializer):
    face_url = serializers.ImageField(source="face_image", read_only=True)
    image_url = serializers.SerializerMethodField(help_text="The original: served only to its uploader and staff.")

    class Meta:
        model = Photo
        fields = [
            "id",
            "status",
            "real_age",
            "date_taken",
            "show_real_age",
            "consent",
            "consent_export",
            "consent_training",
            "consent_changed_at",
            "face_url",
            "image_url",
            "width",
            "height",
            "face",
            "n_votes",
            "n_kept",
            "apparent_age",
            "apparent_age_std",
            "created_at",
        ]

    def get_image_url(self, photo) -> str | None:
        if not photo.image:
            return None
        url = reverse("api-photo-original", args=[photo.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class PhotoListCreateView(ListAPIView):
    """GET: my photos. POST: upload a photo of one person with their real age."""

    serializer_class = OwnPhotoSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return photos_of(self.request.user)

    def get_throttles(self):
        return [UploadThrottle()] if self.request.method == "POST" else []

    @extend_schema(request=PhotoUploadSerializer, responses={201: OwnPhotoSerializer})
    def post(self, request):
        incoming = PhotoUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        try:
            photo = create_photo(
                owner=request.user,
                image=data["image"],
                real_age=data["real_age"],
                consent=data["consent"],
                consent_export=data["consent_export"],
                consent_training=data["consent_training"],
                crop_box=data["crop_box"],
                date_taken=data.get("date_taken"),
                show_real_age=data["show_real_age"],
            )
        except UploadRejected as exc:
            return Response({exc.field: [exc.message], "code": exc.code}, status=status.HTTP_400_BAD_REQUEST)
        return Response(OwnPhotoSerializer(photo, context={"request": request}).data, status=status.HTTP_201_CREATED)


class PhotoReportSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=PhotoReport.Reason.choices)
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PhotoReportView(APIView):
    @extend_schema(
        request=PhotoReportSerializer,
        responses={201: inline_serializer("ReportCreated", {"id": serializers.IntegerField()})},
    )
    def post(self, request, pk: int):
        photo = visible_photo(pk)
        if photo is None:
            raise Http404("No such photo.")
        incoming = PhotoReportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            report = moderation.report_photo(reporter=request.user, photo=photo, **incoming.validated_data)
        except moderation.ModerationRefused as exc:
            return error(exc.message, exc.status)
        return Response({"id": report.pk}, status=status.HTTP_201_CREATED)


class PhotoModerationSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["hide", "restore", "dismiss"])


class PhotoModerationView(APIView):
    """Staff: hide a photo from voters, restore it, or dismiss its reports."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=PhotoModerationSerializer,
        responses={200: inline_serializer("ModerationDone", {"id": serializers.IntegerField(), "status": serializers.CharField()})},
    )
    def post(self, request, pk: int):
        incoming = PhotoModerationSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        service = {
            "hide": moderation.hide_photo,
            "restore": moderation.restore_photo,
            "dismiss": moderation.dismiss_reports,
        }[incoming.validated_data["action"]]
        try:
            service(staff_user=request.user, photo_id=pk)
        except Photo.DoesNotExist:
            raise Http404("No such photo.") from None
        except moderation.ModerationRefused as exc:
            return error(exc.message, exc.status)
        return Response({"id": pk, "status": Photo.objects.values_list("status", flat=True).get(pk=pk)})


class PhotoResourceView(PhotoDetailView):
    """GET /api/photos/{id}/ (the game's view of a photo) and DELETE by its uploader."""

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        return delete_own_photo_response(request, pk)


def delete_own_photo_response(request, pk: int) -> Response:
    """The uploader removes a photo: it leaves voting and every later export; its files go."""
    try:
        withdrawal.delete_photo(user=request.user, photo_id=pk)
    except Photo.DoesNotExist:
        raise Http404("No such photo.") from None
    except withdrawal.WithdrawalRefused as exc:
        return error(exc.message, exc.status)
    return Response(status=status.HTTP_204_NO_CONTENT)
