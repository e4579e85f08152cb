"""Pages and API of the age models: validate, call one service or selector, render."""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from PIL import Image
from rest_framework import permissions, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from labeling.imaging import ImageRejected, normalise_image, read_limited
from labeling.models import Photo
from labeling.services.uploads import MIN_FACE_CONFIDENCE
from modelhub import maps, selectors
from modelhub.models import ModelRole, ModelVersion, TrainingRun
from modelhub.registry import NoActiveModel, active_models, predict_faces
from modelhub.services import promotion, run_settings, runs
from modelhub.services.predictions import queue_stale_predictions
from modeling import recipes
from modeling.faces import detect, face_crop

logger = logging.getLogger(__name__)


def _staff_only(request):
    if not selectors.can_train(request.user):
        raise PermissionDenied("Only staff can train and promote models.")


# ------------------------------------------------------------------------------------------
# pages

@login_required
def dashboard(request):
    _staff_only(request)
    if selectors.embedded_mode():
        # No worker to pick up a run that a restarted dev server left half-done: resume it here.
        runs.resume_interrupted_runs()
    context = {
        "active": selectors.active_versions(),
        "open_run": runs.open_run(),
        "runs": selectors.runs()[:20],
        "versions": selectors.versions()[:40],
        "exports": selectors.finished_exports()[:20],
        "defaults": run_settings.default_train_settings(),
        "custom": run_settings.custom_defaults(),
        "recipes": run_settings.recipe_choices(),
        "backbones": run_settings.BACKBONES,
        "embedded": selectors.embedded_mode(),
        "previous": {role: selectors.previous_version(role) for role in ModelRole.values},
    }
    return render(request, "modeling/dashboard.html", context)


@login_required
@require_POST
def train(request):
    _staff_only(request)
    data = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    data["include_simulated"] = "include_simulated" in request.POST
    if data.get("recipe") != "custom":  # the form always posts the custom recipe's fields
        data = {k: v for k, v in data.items() if k not in recipes.CUSTOM_FIELDS}
    try:
        run = runs.request_training(user=request.user, **data)
    except runs.TrainingRefused as exc:
        messages.error(request, exc.message)
        return redirect("models_dashboard")
    messages.success(request, f"Training run #{run.pk} queued.")
    return redirect("model_run", pk=run.pk)


@login_required
def run_page(request, pk: int):
    _staff_only(request)
    run = get_object_or_404(selectors.runs(), pk=pk)
    return render(request, "modeling/run.html", {"run": run, "payload": selectors.run_payload(run)})


@login_required
@require_POST
def cancel(request, pk: int):
    _staff_only(request)
    run = get_object_or_404(TrainingRun, pk=pk)
    runs.cancel_run(run, user=request.user)
    messages.info(request, f"Run #{run.pk}: cancel requested.")
    return redirect("model_run", pk=run.pk)


@login_required
@require_POST
def activate(request, pk: int):
    _staff_only(request)
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        promotion.activate_version(version, user=request.user, reason="promoted by hand")
        queue_stale_predictions()
    except promotion.ActivationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{version} is now the active {version.get_role_display().lower()} model.")
    return redirect("models_dashboard")


@login_required
@require_POST
def rollback(request, role: str):
    _staff_only(request)
    try:
        version = promotion.rollback(role, user=request.user)
    except promotion.ActivationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Rolled back: {version} is active again.")
    return redirect("models_dashboard")


@login_required
def you_vs_dex(request):
    return render(request, "modeling/you_vs_dex.html", {"stats": selectors.you_vs_model(request.user)})


@login_required
def photo_maps(request, pk: int):
    if not selectors.can_see_maps(request.user):
        raise PermissionDenied("Sensitivity maps are for staff and researchers.")
    photo = get_object_or_404(Photo.objects.exclude(face_image=""), pk=pk)  # a deleted photo has no face left
    try:
        paths = maps.cached_maps(photo, selectors.sensitivity_cache_root())
    except Exception as exc:  # noqa: BLE001 - shown on the page, never a 500
        logger.exception("sensitivity maps of photo %s failed", pk)
        paths, error = {}, f"The maps could not be computed: {exc}"
    else:
        error = "" if paths else "No model is active yet: train and activate one first."
    items = [{"kind": k, "title": maps.TITLES[k]} for k in maps.KINDS if k in paths]
    return render(request, "modeling/photo_maps.html",
                  {"photo": photo, "items": items, "error": error, "active": selectors.active_versions()})


@login_required
def photo_map_image(request, pk: int, kind: str):
    if not selectors.can_see_maps(request.user):
        raise PermissionDenied("Sensitivity maps are for staff and researchers.")
    if kind not in maps.KINDS:
        raise Http404
    photo = get_object_or_404(Photo.objects.exclude(face_image=""), pk=pk)  # a deleted photo has no face left
    paths = maps.cached_maps(photo, selectors.sensitivity_cache_root())
    if kind not in paths:
        raise Http404
    response = FileResponse(open(paths[kind], "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


# ------------------------------------------------------------------------------------------
# API

class IsStaff(permissions.BasePermission):
    message = "Only staff can train, promote and roll back models."

    def has_permission(self, request, view):
        return selectors.can_train(request.user)


class TrainView(APIView):
    """POST /api/models/train/ `{recipe, target, max_minutes, export}` (or the custom recipe's
    `{backbone, image_size, epochs, batch_size, lr}`)."""

    permission_classes = [permissions.IsAuthenticated, IsStaff]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="models_train",
        request=inline_serializer("TrainRequest", {
            "export": serializers.CharField(required=False, help_text="'latest' (default), 'now' or an export id"),
            "recipe": serializers.ChoiceField(list(run_settings.RECIPE_CHOICES), required=False,
                                              help_text="default: MODELING_DEFAULT_RECIPE ('auto': chosen by the "
                                                        "worker's device and the budget); 'custom' when only "
                                                        "single-net fields are given"),
            "target": serializers.ChoiceField(["full", "apparent", "real"], required=False),
            "max_minutes": serializers.FloatField(required=False, help_text="budget of the whole run's networks "
                                                                          "(default: the recipe's)"),
            "backbone": serializers.ChoiceField(list(run_settings.BACKBONES), required=False,
                                                help_text="custom recipe only"),
            "epochs": serializers.IntegerField(required=False, help_text="custom recipe only"),
            "image_size": serializers.IntegerField(required=False, help_text="custom recipe only"),
            "batch_size": serializers.IntegerField(required=False, help_text="custom recipe only"),
            "lr": serializers.FloatField(required=False, help_text="custom recipe only"),
            "include_simulated": serializers.BooleanField(required=False),
        }),
        responses={202: OpenApiResponse(OpenApiTypes.OBJECT, description="the queued run"),
                   400: OpenApiResponse(OpenApiTypes.OBJECT, description="bad settings"),
                   403: OpenApiResponse(OpenApiTypes.OBJECT, description="not staff"),
                   409: OpenApiResponse(OpenApiTypes.OBJECT, description="a run is already queued or running")},
    )
    def post(self, request):
        data = request.data.dict() if hasattr(request.data, "dict") else dict(request.data)
        data.pop("dataset_dir", None)  # never from a request
        try:
            run = runs.request_training(user=request.user, **data)
        except runs.TrainingRefused as exc:
            body = {"detail": exc.message}
            if exc.field:
                body[exc.field] = [exc.message]
            return Response(body, status=exc.status_code)
        run.refresh_from_db()
        return Response(selectors.run_payload(run), status=status.HTTP_202_ACCEPTED)


class RunListView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_runs_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"results": [selectors.run_payload(r) for r in selectors.runs()[:50]]})


class RunDetailView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_run_retrieve", responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request, pk: int):
        run = get_object_or_404(selectors.runs(), pk=pk)
        return Response(selectors.run_payload(run))


class RunCancelView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_run_cancel", request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        run = get_object_or_404(TrainingRun, pk=pk)
        run = runs.cancel_run(run, user=request.user)
        return Response(selectors.run_payload(run))


class ModelListView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        active = selectors.active_versions()
        return Response({
            "active": {role: (v.pk if v else None) for role, v in active.items()},
            "results": [selectors.version_payload(v) for v in selectors.versions()[:200]],
        })


class ActivateView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_activate", request=None,
                   responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        try:
            version = promotion.activate_version(version, user=request.user, reason="promoted by hand (API)")
        except promotion.ActivationRefused as exc:
            return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)
        queue_stale_predictions()
        return Response(selectors.version_payload(version))


class RollbackView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(operation_id="models_rollback",
                   request=inline_serializer("RollbackRequest", {"role": serializers.ChoiceField(["apparent", "real"])}),
                   responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request):
        role = str(request.data.get("role") or "")
        try:
            version = promotion.rollback(role, user=request.user)
        except promotion.ActivationRefused as exc:
            return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.version_payload(version))


class PredictThrottle(UserRateThrottle):
    scope = "predict"

    def get_rate(self):
        return settings.MODELING_PREDICT_RATE


class PredictView(APIView):
    """POST /api/predict/ multipart `image`: every face with its box, apparent and real age."""

    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [PredictThrottle]

    @extend_schema(
        operation_id="predict",
        request={"multipart/form-data": inline_serializer("PredictRequest", {"image": serializers.FileField()})},
        responses={
            200: inline_serializer("PredictResponse", {
                "faces": inline_serializer("PredictedFace", {
                    "box": serializers.ListField(child=serializers.FloatField(), help_text="[x, y, w, h] in pixels"),
                    "confidence": serializers.FloatField(),
                    "rotation": serializers.IntegerField(),
                    "apparent_age": serializers.FloatField(allow_null=True),
                    "real_age": serializers.FloatField(allow_null=True),
                }, many=True),
                "image_size": serializers.ListField(child=serializers.IntegerField()),
                "models": serializers.DictField(child=serializers.IntegerField(allow_null=True)),
                "detail": serializers.CharField(),
            }),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="not an acceptable image"),
            503: OpenApiResponse(OpenApiTypes.OBJECT, description="no model is active yet"),
        },
    )
    def post(self, request):
        upload = request.FILES.get("image")
        if upload is None:
            return Response({"image": ["Attach an image file as 'image' (multipart form)."]},
                            status=status.HTTP_400_BAD_REQUEST)
        cfg = settings.APPAREAL
        try:
            data = read_limited(upload, cfg["UPLOAD_MAX_BYTES"])
            image = normalise_image(data, max_pixels=cfg["UPLOAD_MAX_PIXELS"])
        except ImageRejected as exc:
            return Response({"image": [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        if not selectors.has_active_model():
            return Response(
                {"detail": "No age model is active yet: an admin has to train one (Models page, or "
                           "POST /api/models/train/) before predictions are available. Try again later."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "600"})
        scale = 1.0
        if max(image.size) > cfg["UPLOAD_MAX_SIDE"]:
            scale = max(image.size) / cfg["UPLOAD_MAX_SIDE"]
            image.thumbnail((cfg["UPLOAD_MAX_SIDE"], cfg["UPLOAD_MAX_SIDE"]), Image.Resampling.LANCZOS)
        faces = [f for f in detect(image, try_rotations=True) if f.confidence >= MIN_FACE_CONFIDENCE]
        faces.sort(key=lambda f: -f.area)
        crops = [face_crop(image, f, margin=cfg["FACE_CROP_MARGIN"], size=cfg["FACE_CROP_SIZE"]) for f in faces]
        try:
            models = active_models()
            ages = predict_faces(models, crops)
        except NoActiveModel:
            return Response({"detail": "No age model is active yet."}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        out = []
        for face, age in zip(faces, ages):
            out.append({
                "box": [round(v * scale, 1) for v in face.box],
                "confidence": round(float(face.confidence), 4),
                "rotation": face.rotation,
                "apparent_age": age["apparent_age"],
                "real_age": age["real_age"],
            })
        return Response({
            "faces": out,
            "image_size": [round(image.width * scale), round(image.height * scale)],
            "models": {"apparent": getattr(models.apparent, "pk", None), "real": getattr(models.real, "pk", None)},
            "detail": "" if out else "No face found in this image.",
        })


class YouVsModelView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(operation_id="models_you_vs_dex", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.you_vs_model(request.user))
