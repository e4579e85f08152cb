"""Account erasure: re-authentication, what goes, what stays (anonymised) and stays exact, who may,
and a half-finished erasure that completes on retry without orphan files."""
import io

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Photo, PhotoReport, PhotoStatus, PlayerKind, Vote
from leaderboard.models import FriendRequest, Friendship, PlayerTotal, PointsAward
from leaderboard.services.friends import send_friend_request
from privacy.models import AccountErasure, AuditAction, AuditEvent, DataDownload, ErasureStatus, PendingFileDeletion
from privacy.services import downloads, erasure, reauth
from privacy.services.placeholders import PREFIX
from tests.factories import PASSWORD, make_user
from tests.privacy.helpers import checks_pass, crowd, private, stored, uploaded, voter

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    """Alice plays: two photos others guessed, guesses on others' photos (scored and pending), a friend,
    a pending request, a report, a social login, a token, a data download."""
    alice, bob = make_user("alice"), make_user("bob")
    mine = [uploaded(alice, real_age=30), uploaded(alice, real_age=40)]
    for photo in mine:
        crowd(photo, [29, 30, 31, 33, 35, 36])
    theirs = [uploaded(bob, real_age=25), uploaded(bob, real_age=50)]
    crowd(theirs[0], [24, 25, 26, 27, 28])
    from labeling.services.votes import cast_vote

    cast_vote(voter=alice, photo_id=theirs[0].pk, age=26)  # scored at once (5 others)
    cast_vote(voter=alice, photo_id=theirs[1].pk, age=52)  # pending
    crowd(theirs[1], [49, 50, 51, 53, 54])  # ... then scored, and alice's vote triggered nothing for them
    send_friend_request(from_user=alice, username="bob")
    from leaderboard.services.friends import accept_friend_request

    accept_friend_request(user=bob, request_id=FriendRequest.objects.get(from_user=alice).pk)
    carol = make_user("carol")
    send_friend_request(from_user=carol, username="alice")
    PhotoReport.objects.create(photo=theirs[1], reporter=alice, reason="other")
    account = SocialAccount.objects.create(user=alice, provider="google", uid="12345", extra_data={"name": "Alice"})
    from allauth.socialaccount.models import SocialApp

    app = SocialApp.objects.create(provider="google", name="g", client_id="c", secret="s")
    SocialToken.objects.create(account=account, app=app, token="t")
    EmailAddress.objects.create(user=alice, email="alice@example.org", primary=True, verified=True)
    token = Token.objects.create(user=alice)
    with django_capture_on_commit_callbacks(execute=True):
        download = downloads.request_download(user=alice)
    assert download.status == "ready"
    return {"alice": alice, "bob": bob, "carol": carol, "mine": mine, "theirs": theirs, "token": token.key,
            "download": download}


def _snapshot(exclude_user):
    """Everything others see: consensus of every photo, every other player's awards and totals."""
    photos = list(Photo.objects.order_by("pk").values_list("pk", "n_votes", "n_kept", "apparent_age", "apparent_age_std"))
    awards = sorted(PointsAward.objects.exclude(user=exclude_user).values_list("user_id", "vote_id", "photo_id", "points",
                                                                               "awarded_at"))
    totals = sorted(PlayerTotal.objects.exclude(user=exclude_user).values_list("user_id", "points"))
    kept = sorted(Vote.objects.values_list("pk", "age", "kept", "created_at"))
    return photos, awards, totals, kept


def test_erasure_with_password_removes_everything_and_keeps_others_exact(world, django_capture_on_commit_callbacks):
    alice = world["alice"]
    paths = [p for photo in world["mine"] for p in stored(photo)]
    before = _snapshot(alice)
    checks_pass()
    client = APIClient()
    client.force_authenticate(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/me/erase/", {"password": PASSWORD}, format="json")
    assert response.status_code == 202, response.content
    assert not User.objects.filter(pk=alice.pk).exists()
    # Photos: tombstones owned by a placeholder, files gone, out of the game.
    for photo in Photo.objects.filter(pk__in=[p.pk for p in world["mine"]]):
        assert photo.status == PhotoStatus.DELETED and photo.owner.username == f"{PREFIX}1"
        assert (photo.image.name, photo.face_image.name, photo.face) == ("", "", {})
    assert not any(p.exists() for p in paths)
    # Votes: anonymised, same ages, same order; consensus, other players' points and the ledger unchanged.
    assert not Vote.objects.filter(voter_id=alice.pk).exists()
    moved = Vote.objects.filter(photo__in=world["theirs"], voter__username__startswith=PREFIX)
    assert sorted(moved.values_list("age", "voter_kind")) == [(26, PlayerKind.ERASED), (52, PlayerKind.ERASED)]
    assert _snapshot(alice) == before
    assert not PointsAward.objects.filter(user_id=alice.pk).exists() and not PlayerTotal.objects.filter(user_id=alice.pk).exists()
    checks_pass()
    # Relations, logins, tokens, downloads.
    assert not Friendship.objects.filter(user_id=alice.pk).exists() and not Friendship.objects.filter(friend_id=alice.pk).exists()
    assert not FriendRequest.objects.filter(to_user_id=alice.pk).exists()
    assert not PhotoReport.objects.filter(reporter_id=alice.pk).exists()
    assert not SocialAccount.objects.filter(user_id=alice.pk).exists() and not SocialToken.objects.exists()
    assert not EmailAddress.objects.filter(email="alice@example.org").exists()
    assert not Token.objects.filter(key=world["token"]).exists()
    assert not DataDownload.objects.exists() and not list(private("downloads").glob("*.zip"))
    erasure_row = AccountErasure.objects.get(user_id=alice.pk)
    assert erasure_row.status == ErasureStatus.DONE and erasure_row.counts["votes_anonymised"] == 2
    assert erasure_row.counts["photos_deleted"] == 2 and erasure_row.counts["friendship_rows_removed"] == 2
    actions = set(AuditEvent.objects.filter(subject_user_id=alice.pk).values_list("action", flat=True))
    assert {AuditAction.ERASURE_REQUESTED, AuditAction.ERASURE_COMPLETED} <= actions
    # No orphan: every file has a row, every row its files, nothing pending.
    out = io.StringIO()
    call_command("privacy_check", "--check", stdout=out)
    assert PendingFileDeletion.objects.count() == 0


def test_token_and_every_session_stop_at_once(world, client):
    alice = world["alice"]
    other_device = APIClient()
    other_device.force_login(alice)
    assert other_device.get("/api/photos/").status_code == 200
    by_token = APIClient(HTTP_AUTHORIZATION=f"Token {world['token']}")
    assert by_token.get("/api/photos/").status_code == 200
    erasure.start_erasure(user=alice, actor=alice)  # the request's part only; the job has not run
    assert by_token.get("/api/photos/").status_code == 401
    assert other_device.get("/api/photos/").status_code in (401, 403)
    assert other_device.get(reverse("my_data")).status_code == 302
    assert APIClient().post("/api/auth/token/", {"username": "alice", "password": PASSWORD}).status_code == 400


def test_the_job_deletes_stored_sessions(world, client):
    from django.contrib.sessions.models import Session

    alice = world["alice"]
    client.force_login(alice)
    other = APIClient()
    other.force_login(world["bob"])
    assert Session.objects.count() == 2
    row = AccountErasure.objects.create(user_id=alice.pk)
    erasure.run_erasure(row.pk)
    remaining = [s.get_decoded().get("_auth_user_id") for s in Session.objects.all()]
    assert remaining == [str(world["bob"].pk)]


@pytest.mark.parametrize("body,expected", [({}, 400), ({"password": ""}, 400), ({"password": "wrong"}, 403),
                                           ({"password": ["x"]}, 400)])
def test_bad_reauthentication_changes_nothing(world, body, expected):
    alice = world["alice"]
    client = APIClient()
    client.force_authenticate(alice)
    response = client.post("/api/me/erase/", body, format="json")
    assert response.status_code == expected, response.content
    alice.refresh_from_db()
    assert alice.is_active and alice.check_password(PASSWORD)
    assert not AccountErasure.objects.exists() and Token.objects.filter(key=world["token"]).exists()


def test_anonymous_cannot_erase():
    assert APIClient().post("/api/me/erase/", {"password": PASSWORD}, format="json").status_code == 401


def test_erase_page_with_password(world, client, django_capture_on_commit_callbacks):
    alice = world["alice"]
    client.force_login(alice)
    assert client.get(reverse("erase")).status_code == 200
    wrong = client.post(reverse("erase"), {"password": "nope"})
    assert wrong.status_code == 403 and "not your password" in wrong.content.decode()
    assert User.objects.filter(pk=alice.pk, is_active=True).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("erase"), {"password": PASSWORD}, follow=True)
    assert "Your account is deleted" in response.content.decode()
    assert not User.objects.filter(pk=alice.pk).exists()
    assert client.get(reverse("my_data")).status_code == 302  # logged out


def test_staff_cannot_erase_themselves_but_another_admin_can(django_capture_on_commit_callbacks):
    staff, admin = make_user("staffer", staff=True), make_user("admin2", staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    response = client.post("/api/me/erase/", {"password": PASSWORD}, format="json")
    assert response.status_code == 403 and "another administrator" in response.json()["detail"]
    assert User.objects.get(pk=staff.pk).is_active
    with pytest.raises(erasure.ErasureRefused):
        reauth.erase_by_admin(actor=admin, user=staff, actor_password="wrong")
    with django_capture_on_commit_callbacks(execute=True):
        reauth.erase_by_admin(actor=admin, user=staff, actor_password=PASSWORD)
    assert not User.objects.filter(pk=staff.pk).exists()
    assert AccountErasure.objects.get(user_id=staff.pk).by_staff


def test_staff_page_erasure_needs_a_superuser(client, django_capture_on_commit_callbacks):
    player = make_user("victim")
    plain_staff = make_user("moderator")
    User.objects.filter(pk=plain_staff.pk).update(is_staff=True, is_superuser=False)
    client.force_login(User.objects.get(pk=plain_staff.pk))
    client.post(reverse("staff_privacy"), {"username": "victim", "password": PASSWORD})
    assert User.objects.filter(pk=player.pk, is_active=True).exists()
    admin = make_user("root", staff=True)
    client.force_login(admin)
    client.post(reverse("staff_privacy"), {"username": "nobody", "password": PASSWORD})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff_privacy"), {"username": "victim", "password": PASSWORD})
    assert not User.objects.filter(pk=player.pk).exists()


def test_system_players_cannot_be_erased():
    model = voter(PlayerKind.MODEL)
    simulated = voter(PlayerKind.SIMULATED)
    admin = make_user(staff=True)
    for user in (model, simulated):
        with pytest.raises(erasure.ErasureRefused):
            reauth.erase_by_admin(actor=admin, user=user, actor_password=PASSWORD)


def _social_only(username="sam"):
    user = User.objects.create(username=username, email=f"{username}@example.org")
    user.set_unusable_password()
    user.save()
    SocialAccount.objects.create(user=user, provider="google", uid=username)
    return user


def test_social_only_account_confirms_by_email(client, django_capture_on_commit_callbacks):
    sam = _social_only()
    client.force_login(sam)
    response = client.post(reverse("erase"))
    assert response.status_code == 302 and len(mail.outbox) == 1
    assert mail.outbox[0].to == ["sam@example.org"]
    link = next(line for line in mail.outbox[0].body.splitlines() if "/my/data/erase/confirm/" in line)
    path = link[link.index("/my/data/"):]
    assert User.objects.get(pk=sam.pk).is_active  # nothing happens before the confirmation
    assert client.get(path).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(path)
    assert not User.objects.filter(pk=sam.pk).exists()


def test_social_only_api_sends_the_link():
    sam = _social_only()
    client = APIClient()
    client.force_authenticate(sam)
    response = client.post("/api/me/erase/", {}, format="json")
    assert response.status_code == 202 and "s***@example.org" in response.json()["detail"]
    assert len(mail.outbox) == 1 and User.objects.get(pk=sam.pk).is_active


def test_bad_confirmation_links_change_nothing(client, settings):
    sam, tom = _social_only("sam"), _social_only("tom")
    client.force_login(sam)
    for token in ("garbage", reauth.make_link_token(tom)):
        client.post(reverse("erase_confirm", args=[token]))
        assert User.objects.get(pk=sam.pk).is_active
    settings.APPAREAL = {**settings.APPAREAL, "ERASURE_LINK_TTL_HOURS": 0}
    with pytest.raises(erasure.ErasureRefused, match="expired"):
        reauth.erase_with_link(user=sam, token=reauth.make_link_token(sam))
    settings.APPAREAL = {**settings.APPAREAL, "ERASURE_LINK_TTL_HOURS": 2}
    token = reauth.make_link_token(sam)
    sam.set_password("now-with-a-password-123")
    sam.save()
    with pytest.raises(erasure.ErasureRefused, match="no longer valid"):
        reauth.erase_with_link(user=sam, token=token)
    assert User.objects.get(pk=sam.pk).is_active and not AccountErasure.objects.exists()


def test_social_only_without_email_is_told_what_to_do():
    sam = _social_only()
    User.objects.filter(pk=sam.pk).update(email="")
    sam.refresh_from_db()
    with pytest.raises(erasure.ErasureRefused, match="no e-mail address"):
        reauth.send_erasure_link(user=sam, link_for=str)
    assert len(mail.outbox) == 0


def test_two_erased_voters_on_one_photo_get_different_placeholders(django_capture_on_commit_callbacks):
    photo = uploaded(make_user())
    a, b = voter(), voter()
    from labeling.services.votes import cast_vote

    cast_vote(voter=a, photo_id=photo.pk, age=30)
    cast_vote(voter=b, photo_id=photo.pk, age=40)
    crowd(photo, [31, 32, 33, 34])
    for user in (a, b):
        erasure.run_erasure(AccountErasure.objects.create(user_id=user.pk).pk)
    holders = sorted(Vote.objects.filter(voter__username__startswith=PREFIX).values_list("voter__username", "age"))
    assert holders == [(f"{PREFIX}1", 30), (f"{PREFIX}2", 40)]
    checks_pass()


def test_half_finished_erasure_completes_on_retry(world, monkeypatch, django_capture_on_commit_callbacks):
    """A worker dies after the votes and photos steps committed (files deleted or queued), before the
    rest: the account stays locked, the checks hold, and the next attempt finishes the job."""
    alice = world["alice"]
    real = erasure._remove_relations

    def killed(user_id):
        raise SystemExit("worker killed")

    monkeypatch.setattr(erasure, "_remove_relations", killed)
    row = erasure.start_erasure(user=alice, actor=alice)  # (its on-commit job does not run in this test)
    with pytest.raises(SystemExit):
        erasure.run_erasure(row.pk)
    row.refresh_from_db()
    assert row.status == ErasureStatus.PENDING and row.attempts >= 1
    assert User.objects.filter(pk=alice.pk, is_active=False).exists()
    assert not Vote.objects.filter(voter_id=alice.pk).exists()
    assert Photo.objects.filter(pk__in=[p.pk for p in world["mine"]], status=PhotoStatus.DELETED).count() == 2
    checks_pass()
    monkeypatch.setattr(erasure, "_remove_relations", real)
    out = io.StringIO()
    from privacy.models import AccountErasure as Row

    Row.objects.filter(pk=row.pk).update(last_attempt_at=None, requested_at="2000-01-01T00:00:00Z")
    call_command("privacy_check", "--fix", "--check", stdout=out)
    row.refresh_from_db()
    assert row.status == ErasureStatus.DONE, out.getvalue()
    assert not User.objects.filter(pk=alice.pk).exists()
    checks_pass()


def test_erasure_never_deletes_photos_or_votes_through_the_cascade(world, monkeypatch):
    alice = world["alice"]
    monkeypatch.setattr(erasure, "_tombstone_photos_of", lambda user_id: {})
    row = AccountErasure.objects.create(user_id=alice.pk)
    with pytest.raises(RuntimeError, match="still owns photos"):
        erasure.run_erasure(row.pk)
    assert User.objects.filter(pk=alice.pk).exists() and Photo.objects.filter(owner=alice).count() == 2
