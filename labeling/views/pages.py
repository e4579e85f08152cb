"""Server-rendered pages of the foundation: home, upload, my photos, moderation, profile."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from labeling.forms import ProfileForm, ReportForm, UploadForm
from labeling.imaging import CropBox
from labeling.models import Photo, PlayerProfile
from labeling.selectors.photos import open_reports, photos_of, review_queue, visible_photo
from labeling.selectors.raters import bias_card
from labeling.services import accounts, moderation
from labeling.services.uploads import UploadRejected, create_photo
from labeling.throttling import UploadThrottle
from leaderboard.selectors import player_stats
from modelhub.selectors import you_vs_model
from privacy.services import withdrawal


def home(request):
    return render(request, "labeling/home.html")


def crop_box_from(data) -> CropBox | None:
    parts = [data.get(k) for k in ("crop_x", "crop_y", "crop_w", "crop_h")]
    if any(p is None for p in parts):
        return None
    x, y, w, h = (int(round(p)) for p in parts)
    return CropBox(x, y, w, h)


@login_required
def upload(request):
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if not UploadThrottle().allow_request(request, None):
            form.is_valid()
            form.add_error(None, "You have uploaded many photos in a short time. Please try again later.")
            return render(request, "labeling/upload.html", {"form": form}, status=429)
        if form.is_valid():
            data = form.cleaned_data
            try:
                create_photo(
                    owner=request.user,
                    image=data["image"],
                    real_age=data["real_age"],
                    consent=data["consent"],
                    consent_export=data.get("consent_export", False),
                    consent_training=data.get("consent_training", False),
                    crop_box=crop_box_from(data),
                    date_taken=data.get("date_taken"),
                    show_real_age=data.get("show_real_age", False),
                )
            except UploadRejected as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, "Thanks! Your photo is in the game; players will start guessing soon.")
                return redirect("my_photos")
        return render(request, "labeling/upload.html", {"form": form}, status=400)
    return render(request, "labeling/upload.html", {"form": UploadForm()})


@login_required
def my_photos(request):
    page = Paginator(photos_of(request.user), 24).get_page(request.GET.get("page"))
    return render(request, "labeling/my_photos.html", {"page": page})


@login_required
@require_POST
def delete_photo(request, pk: int):
    if not Photo.objects.filter(pk=pk, owner_id=request.user.pk).exists():
        raise Http404("No such photo among yours.")
    try:
        withdrawal.delete_photo(user=request.user, photo_id=pk)
    except Photo.DoesNotExist:
        raise Http404("No such photo.") from None
    except withdrawal.WithdrawalRefused as exc:
        messages.error(request, exc.message)
        return redirect("my_photos")
    messages.success(request, "The photo is deleted: it left the game and every future dataset export, and its "
                              "files are deleted from the server.")
    return redirect("my_photos")


@login_required
@require_POST
def report_photo(request, pk: int):
    photo = visible_photo(pk)
    if photo is None:
        raise Http404("No such photo.")
    form = ReportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a reason for the report.")
    else:
        try:
            moderation.report_photo(reporter=request.user, photo=photo, **form.cleaned_data)
            messages.success(request, "Thanks, staff will review this photo.")
        except moderation.ModerationRefused as exc:
            messages.error(request, exc.message)
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        return redirect(next_url)
    return redirect("home")


@staff_member_required
def moderation_queue(request):
    page = Paginator(review_queue(), 20).get_page(request.GET.get("page"))
    for photo in page:
        photo.open_report_list = list(open_reports(photo))
    return render(request, "labeling/moderation.html", {"page": page})


@staff_member_required
@require_POST
def moderation_action(request, pk: int):
    action = request.POST.get("action")
    actions = {
        "hide": (moderation.hide_photo, "Photo hidden: voters no longer see it."),
        "restore": (moderation.restore_photo, "Photo restored to the game."),
        "dismiss": (moderation.dismiss_reports, "Reports dismissed."),
    }
    if action not in actions:
        messages.error(request, "Unknown action.")
        return redirect("moderation")
    service, done = actions[action]
    try:
        service(staff_user=request.user, photo_id=pk)
    except Photo.DoesNotExist:
        raise Http404("No such photo.") from None
    except moderation.ModerationRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("moderation")


@login_required
def profile(request):
    profile_row, _ = PlayerProfile.objects.get_or_create(user=request.user)
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            try:
                accounts.update_profile(
                    user=request.user,
                    birth_year=form.cleaned_data["birth_year"],
                    gender=form.cleaned_data["gender"] or "",
                )
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Profile saved.")
                return redirect("profile")
    else:
        form = ProfileForm(initial={"birth_year": profile_row.birth_year, "gender": profile_row.gender})
    context = {
        "form": form,
        "profile": profile_row,
        "stats": player_stats(request.user),
        "bias_card": bias_card(request.user),
        "you_vs_dex": you_vs_model(request.user),
    }
    return render(request, "labeling/profile.html", context, status=400 if form.errors else 200)

