"""Everything the site holds about one player, as JSON-ready dicts (the personal-data download).

One function per file of the zip; each reads only rows of that player (or rows about their own
photos). Passwords, API token keys and other players' data beyond a friend's username are never
included.
"""
from __future__ import annotations

from django.db.models import Q

from labeling.models import Photo, PhotoReport, PlayerProfile, RaterEstimate, Vote
from leaderboard.models import FriendRequest, Friendship, PlayerTotal, PlayerWeekTotal, PointsAward
from privacy.models import AuditAction, AuditEvent
from privacy.selectors import photo_lineage


def _iso(value):
    return value.isoformat() if value is not None else None


def account(user) -> dict:
    from allauth.account.models import EmailAddress
    from allauth.socialaccount.models import SocialAccount
    from rest_framework.authtoken.models import Token

    token = Token.objects.filter(user_id=user.pk).values_list("created", flat=True).first()
    return {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": _iso(user.date_joined),
        "last_login": _iso(user.last_login),
        "is_staff": user.is_staff,
        "has_password": user.has_usable_password(),
        "email_addresses": [
            {"email": e.email, "verified": e.verified, "primary": e.primary}
            for e in EmailAddress.objects.filter(user_id=user.pk).order_by("pk")
        ],
        "social_logins": [
            {"provider": s.provider, "uid": s.uid, "date_joined": _iso(s.date_joined), "last_login": _iso(s.last_login),
             "data_from_provider": s.extra_data}
            for s in SocialAccount.objects.filter(user_id=user.pk).order_by("pk")
        ],
        "api_token": {"exists": token is not None, "created": _iso(token)},
    }


def profile(user) -> dict:
    row = PlayerProfile.objects.filter(user_id=user.pk).first()
    if row is None:
        return {}
    out = {"kind": row.kind, "birth_year": row.birth_year, "gender": row.gender,
           "flagged_outlier": row.flagged_outlier, "flagged_at": _iso(row.flagged_at)}
    # What the crowd model estimated of how the player guesses (their bias card), when fitted.
    rater = RaterEstimate.objects.filter(user_id=user.pk).first()
    if rater is not None:
        out["rater_model"] = {"votes": rater.n_votes, "bias": rater.bias, "bias_se": rater.bias_se,
                              "bias_by_face_age_band": rater.band_bias, "bias_se_by_face_age_band": rater.band_bias_se,
                              "votes_by_face_age_band": rater.band_votes, "noise": rater.noise,
                              "noise_se": rater.noise_se, "fitted_at": _iso(rater.fitted_at)}
    return out


def photos(user) -> list[dict]:
    rows = list(Photo.objects.filter(owner_id=user.pk).order_by("pk"))
    lineage = photo_lineage([p.pk for p in rows])
    out = []
    for p in rows:
        out.append({
            "id": p.pk, "status": p.status, "source": p.source, "real_age": p.real_age, "date_taken": _iso(p.date_taken),
            "uploaded_at": _iso(p.created_at), "show_real_age": p.show_real_age,
            "consent": {"game": p.consent, "research_exports": p.consent_export, "model_training": p.consent_training,
                        "changed_at": _iso(p.consent_changed_at)},
            "width": p.width, "height": p.height, "face": p.face,
            "crowd": {"votes": p.n_votes, "kept_votes": p.n_kept, "apparent_age": p.apparent_age,
                      "apparent_age_std": p.apparent_age_std},
            "model_prediction": {"apparent_age": p.predicted_apparent_age, "real_age": p.predicted_real_age},
            "split": p.split,
            "in_exports": [{"id": e["id"], "purpose": e["purpose"], "created_at": _iso(e["created_at"])}
                           for e in lineage[p.pk]["exports"]],
            "in_models": [{"id": m["id"], "name": m["name"], "created_at": _iso(m["created_at"])}
                          for m in lineage[p.pk]["models"]],
            "files": {"original": f"photos/{p.pk:06d}.jpg" if p.image else None,
                      "face_crop": f"photos/{p.pk:06d}_face.jpg" if p.face_image else None},
        })
    return out


def votes(user) -> list[dict]:
    rows = Vote.objects.filter(voter_id=user.pk).select_related("award").order_by("pk")
    return [
        {"photo_id": v.photo_id, "age": v.age, "cast_at": _iso(v.created_at), "kept_by_consensus": v.kept,
         "points": getattr(getattr(v, "award", None), "points", None),
         "scored_against": getattr(getattr(v, "award", None), "scored_against", None)}
        for v in rows.iterator(chunk_size=5000)
    ]


def points(user) -> dict:
    total = PlayerTotal.objects.filter(user_id=user.pk).values_list("points", flat=True).first() or 0
    return {
        "total": total,
        "by_week": [{"week": _iso(w), "points": n} for w, n in
                    PlayerWeekTotal.objects.filter(user_id=user.pk).order_by("week").values_list("week", "points")],
        "awards": [
            {"reason": a.reason, "points": a.points, "photo_id": a.photo_id, "awarded_at": _iso(a.awarded_at)}
            for a in PointsAward.objects.filter(user_id=user.pk).order_by("awarded_at", "pk").iterator(chunk_size=5000)
        ],
    }


def friends(user) -> dict:
    return {
        "friends": [{"username": f.friend.username, "since": _iso(f.created_at)}
                    for f in Friendship.objects.filter(user_id=user.pk).select_related("friend").order_by("created_at")],
        "requests": [
            {"from": r.from_user.username, "to": r.to_user.username, "status": r.status,
             "sent_at": _iso(r.created_at), "answered_at": _iso(r.responded_at)}
            for r in FriendRequest.objects.filter(Q(from_user_id=user.pk) | Q(to_user_id=user.pk))
            .select_related("from_user", "to_user").order_by("created_at")
        ],
    }


def reports(user) -> list[dict]:
    return [{"photo_id": r.photo_id, "reason": r.reason, "comment": r.comment, "created_at": _iso(r.created_at),
             "resolution": r.resolution} for r in PhotoReport.objects.filter(reporter_id=user.pk).order_by("pk")]


def consents(user) -> dict:
    """The current scopes of every photo and the history of every change."""
    history = AuditEvent.objects.filter(subject_user_id=user.pk, action=AuditAction.CONSENT_CHANGED).order_by("at", "pk")
    return {
        "current": [{"photo_id": p["id"], **p["consent"]} for p in photos(user) if p["status"] != "deleted"],
        "changes": [{"photo_id": e.photo_id, "at": _iso(e.at), "before": e.details.get("before"),
                     "after": e.details.get("after")} for e in history],
    }


def activity(user) -> list[dict]:
    """The audit log's events about this player (deletions, downloads, consent changes)."""
    return [{"at": _iso(e.at), "action": e.action, "photo_id": e.photo_id, "by_staff": e.actor_is_staff}
            for e in AuditEvent.objects.filter(subject_user_id=user.pk).order_by("at", "pk")]


SECTIONS = {"account": account, "profile": profile, "photos": photos, "votes": votes, "points": points,
            "friends": friends, "reports": reports, "consents": consents, "activity": activity}
