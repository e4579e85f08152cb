"""Pages: "My data" (consents, lineage, downloads, erasure) and the staff privacy page."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from labeling.models import Photo, PhotoStatus
from privacy import selectors
from privacy.models import AuditAction, DownloadStatus
from privacy.services import consent, downloads, reauth
from privacy.services.erasure import ErasureRefused
from privacy.services.retrain import RetrainRefused, retrain_without_withdrawn
from privacy.services.withdrawal import WithdrawalRefused
from privacy.views.files import original_response, private_file_response


@login_required
def my_data(request):
    photos = list(Photo.objects.filter(owner_id=request.user.pk).exclude(status=PhotoStatus.DELETED).order_by("-created_at"))
    lineage = selectors.photo_lineage([p.pk for p in photos])
    for photo in photos:
        photo.lineage = lineage[photo.pk]
    return render(request, "privacy/my_data.html", {
        "photos": photos,
        "downloads": selectors.downloads_of(request.user)[:10],
        "deleted_photos": Photo.objects.filter(owner_id=request.user.pk, status=PhotoStatus.DELETED).count(),
    })


def original(request, pk: int):
    return original_response(request, pk)


def _checked(request, name: str) -> bool:
    return request.POST.get(name) in ("on", "true", "1")


@login_required
@require_POST
def change_consent(request, pk: int):
    if not Photo.objects.filter(pk=pk, owner_id=request.user.pk).exists():
        raise Http404("No such photo among yours.")
    try:
        consent.change_consent(user=request.user, photo_id=pk, export=_checked(request, "export"),
                               training=_checked(request, "training"))
    except Photo.DoesNotExist:
        raise Http404("No such photo.") from None
    except WithdrawalRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Consent of photo {pk} saved. Withdrawn uses stop now: later exports leave the "
                                  "photo out, and stored exports that held it are deleted.")
    return redirect(reverse("my_data") + f"#photo-{pk}")


@login_required
@require_POST
def request_download(request):
    download = downloads.request_download(user=request.user)
    if download.status == DownloadStatus.READY:
        messages.success(request, "Your data is ready: download it below.")
    elif download.status == DownloadStatus.FAILED:
        messages.error(request, f"Building your data failed: {download.error}")
    else:
        messages.info(request, "Your data is being collected; reload this page in a few minutes.")
    return redirect(reverse("my_data") + "#downloads")


@login_required
def download_file(request, pk: int):
    download = selectors.downloads_of(request.user).filter(pk=pk, status=DownloadStatus.READY).first()
    if download is None:
        raise Http404("No such download (or it has expired).")
    downloads.mark_fetched(download, user=request.user)
    return private_file_response(download.file, content_type="application/zip",
                                 download_name=f"appareal-my-data-{download.created_at:%Y%m%d}-{download.pk}.zip")


def _after_erasure(request):
    logout(request)
    messages.success(request, "Your account is deleted: you are logged out everywhere, and your photos, votes, "
                              "points and friendships are being erased.")
    return redirect("home")


@login_required
def erase(request):
    user = request.user
    if request.method == "POST":
        try:
            if user.has_usable_password():
                reauth.erase_with_password(user=user, password=request.POST.get("password", ""))
                return _after_erasure(request)
            address = reauth.send_erasure_link(
                user=user, link_for=lambda token: request.build_absolute_uri(reverse("erase_confirm", args=[token])))
            messages.info(request, f"We sent a confirmation link to {address}. Open it while logged in to finish.")
            return redirect("erase")
        except ErasureRefused as exc:
            messages.error(request, exc.message)
            return render(request, "privacy/erase.html", {"has_password": user.has_usable_password()},
                          status=exc.status)
    return render(request, "privacy/erase.html", {"has_password": user.has_usable_password()})


@login_required
def erase_confirm(request, token: str):
    if request.method == "POST":
        try:
            reauth.erase_with_link(user=request.user, token=token)
        except ErasureRefused as exc:
            messages.error(request, exc.message)
            return redirect("erase")
        return _after_erasure(request)
    return render(request, "privacy/erase_confirm.html", {"token": token})


def _int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) <= 18 else None


@staff_member_required
def staff_privacy(request):
    if request.method == "POST":
        return _staff_erase(request)
    user_id, photo_id = _int_param(request, "user"), _int_param(request, "photo")
    action = request.GET.get("action", "")
    action = action if action in AuditAction.values else ""
    events = Paginator(selectors.audit_events(user_id=user_id, photo_id=photo_id, action=action), 50)
    page = events.get_page(request.GET.get("page"))
    names = selectors.user_ids_to_names([e.actor_id for e in page] + [e.subject_user_id for e in page])
    for event in page:
        event.actor_name = names.get(event.actor_id, f"#{event.actor_id}")
        event.subject_name = names.get(event.subject_user_id, f"#{event.subject_user_id}")
    lineage = None
    if photo_id is not None:
        lineage = selectors.photo_lineage([photo_id])[photo_id]
    return render(request, "privacy/staff.html", {
        "page": page, "filters": {"user": user_id or "", "photo": photo_id or "", "action": action},
        "actions": AuditAction.choices, "lineage": lineage, "photo_id": photo_id,
        "withdrawn_models": selectors.models_on_withdrawn_photos(),
    })


@staff_member_required
@require_POST
def staff_retrain(request, pk: int):
    try:
        run = retrain_without_withdrawn(user=request.user, version_id=pk)
    except RetrainRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Training run #{run.pk} queued on a fresh training export, without the withdrawn "
                                  "photos; the promotion gate decides whether it replaces the active model.")
    return redirect(reverse("staff_privacy") + "#withdrawn-models")


def _staff_erase(request):
    username = request.POST.get("username", "").strip()
    target = get_user_model().objects.filter(username=username).first() if username else None
    if target is None:
        messages.error(request, "No account has that user name.")
        return redirect("staff_privacy")
    try:
        reauth.erase_by_admin(actor=request.user, user=target, actor_password=request.POST.get("password", ""))
    except ErasureRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Account {username} is locked and being erased.")
    return redirect("staff_privacy")
