"""Dataset exports: the API (POST/GET /api/exports/, GET /api/exports/{id}/, .../download/) and the page.

Only staff and members of the "researchers" group; players get 403.  Views validate, call the
export service or selectors, and render; the zip is built by a Celery task on the default queue.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from appareal_site.api import error
from labeling.models import DatasetExport, ExportPurpose, ExportStatus
from labeling.selectors.exports import can_export, export_path, exports
from labeling.services.exports import ExportRejected, request_export


class IsStaffOrResearcher(BasePermission):
    message = "Exports are for staff and researchers only."

    def has_permission(self, request, view):
        return can_export(request.user)


class ExportRequestSerializer(serializers.Serializer):
    purpose = serializers.ChoiceField(
        choices=ExportPurpose.choices, required=False, default=ExportPurpose.RESEARCH,
        help_text="'research' (default): photos consented for research exports; 'training': photos consented "
                  "for model training (what the app's retraining reads).")
    name = serializers.CharField(required=False, default="appareal", max_length=64,
                                 help_text="Top folder inside the zip (letters, digits, . _ -).")
    include_simulated = serializers.BooleanField(required=False, default=False,
                                                 help_text="Also simulated photos and simulated players' votes.")
    include_dropped = serializers.BooleanField(required=False, default=False,
                                               help_text="Also write the votes dropped as outliers.")
    min_kept_votes = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1,
        help_text="Photos with at least this many kept votes; null (default): the retired photos (the rater-aware "
                  "label reached APPAREAL_TARGET_SE, or the vote cap).")


class ExportSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default=None, read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetExport
        fields = ["id", "name", "purpose", "status", "progress", "options", "counts", "size_bytes", "sha256", "error",
                  "requested_by", "created_at", "started_at", "finished_at", "files_purged_at", "purge_reason",
                  "download_url"]

    def get_download_url(self, obj) -> str | None:
        if obj.status != ExportStatus.SUCCEEDED or not obj.file:
            return None
        return reverse("api-export-download", args=[obj.pk])


class ExportListCreateView(APIView):
    permission_classes = [IsAuthenticated, IsStaffOrResearcher]

    @extend_schema(responses=ExportSerializer(many=True), summary="The exports, newest first")
    def get(self, request):
        return Response(ExportSerializer(exports()[:100], many=True).data)

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportSerializer},
                   summary="Start an APPA-REAL export (runs in the background)")
    def post(self, request):
        form = ExportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            export = request_export(user=request.user, **form.validated_data)
        except ExportRejected as exc:
            return Response({exc.field: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailView(APIView):
    permission_classes = [IsAuthenticated, IsStaffOrResearcher]

    @extend_schema(responses=ExportSerializer, summary="One export: status, progress, counts, checksum")
    def get(self, request, pk: int):
        export = exports().filter(pk=pk).first()
        if export is None:
            raise Http404
        return Response(ExportSerializer(export).data)


def _zip_response(export: DatasetExport, user) -> FileResponse:
    from privacy import audit
    from privacy.models import AuditAction

    path = export_path(export)
    if path is None:
        raise Http404("The export's file is gone.")
    # Who holds a copy: staff can ask them to delete it when a photo in it is withdrawn.
    audit.record(AuditAction.EXPORT_DOWNLOADED, actor=user, export_id=export.pk)
    response = FileResponse(open(path, "rb"), as_attachment=True, filename=f"{export.name}-{export.pk}.zip",
                            content_type="application/zip")
    response["X-Checksum-SHA256"] = export.sha256
    response["Cache-Control"] = "private, no-store"
    return response


class ExportDownloadView(APIView):
    permission_classes = [IsAuthenticated, IsStaffOrResearcher]

    @extend_schema(responses={(200, "application/zip"): bytes}, summary="Download a finished export's zip")
    def get(self, request, pk: int):
        export = exports().filter(pk=pk).first()
        if export is None:
            raise Http404
        if export.status != ExportStatus.SUCCEEDED:
            return error(f"Export {pk} is {export.status}, not ready to download.", status.HTTP_409_CONFLICT)
        if export.files_purged_at is not None:
            return error(f"Export {pk}'s files were deleted: {export.purge_reason}. Make a new export.",
                         status.HTTP_410_GONE)
        return _zip_response(export, request.user)


# --- pages -------------------------------------------------------------------------------------------

def _researcher_only(request):
    if not can_export(request.user):
        raise PermissionDenied("Exports are for staff and researchers only.")


@login_required
def exports_page(request):
    _researcher_only(request)
    if request.method == "POST":
        try:
            export = request_export(
                user=request.user,
                purpose=request.POST.get("purpose") or ExportPurpose.RESEARCH,
                name=request.POST.get("name") or "appareal",
                include_simulated=request.POST.get("include_simulated") == "on",
                include_dropped=request.POST.get("include_dropped") == "on",
                min_kept_votes=request.POST.get("min_kept_votes") or None,
            )
        except ExportRejected as exc:
            messages.error(request, f"{exc.field.replace('_', ' ').capitalize()}: {exc.message}")
        else:
            messages.success(request, f"Export {export.pk} queued; this page shows its progress.")
            return redirect("exports")
    return render(request, "labeling/exports.html", {
        "exports": exports()[:50],
        "default_min_kept": settings.APPAREAL["EXPORT_MIN_KEPT_VOTES"],
        "is_researcher": True,
    })


@login_required
def export_download(request, pk: int):
    _researcher_only(request)
    export = get_object_or_404(DatasetExport, pk=pk, status=ExportStatus.SUCCEEDED)
    return _zip_response(export, request.user)
