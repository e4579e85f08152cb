"""Production settings pass Django's deploy checks; accounts: sign-up, log-in, token, profile."""
import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from labeling.models import PlayerProfile
from tests.conftest import REPO_ROOT
from tests.factories import PASSWORD, make_user


def test_check_deploy_passes_with_production_settings():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DEBUG": "0",
        "SECRET_KEY": "x" * 20 + "-production-like-secret-key-with-enough-entropy-0123456789",
        "ALLOWED_HOSTS": "appareal.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_the_dev_secret_key():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "", "ALLOWED_HOSTS": "appareal.example.org"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_passwords_hashed_with_argon2(db, settings):
    from appareal_site import settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    user = make_user()
    assert user.password.startswith("argon2")


@pytest.mark.django_db
def test_signup_creates_profile_and_logs_in(client):
    response = client.post(
        reverse("account_signup"),
        {"username": "newbie", "email": "newbie@example.org", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(username="newbie")
    assert PlayerProfile.objects.get(user=user).kind == "human"
    assert client.get(reverse("my_photos")).status_code == 200


@pytest.mark.django_db
def test_login_by_email_and_logout(client):
    make_user("alice")
    response = client.post(reverse("account_login"), {"login": "alice@example.org", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("profile")).status_code == 200
    client.post(reverse("account_logout"))
    assert client.get(reverse("profile")).status_code == 302


@pytest.mark.django_db
def test_login_is_rate_limited(client):
    make_user("bob")
    codes = [
        client.post(reverse("account_login"), {"login": "bob", "password": "wrong"}).status_code for _ in range(8)
    ]
    page = client.post(reverse("account_login"), {"login": "bob", "password": PASSWORD})
    assert 429 in codes or page.status_code == 429 or b"Too many" in page.content


@pytest.mark.django_db
def test_password_reset_sends_mail(client):
    make_user("carol")
    client.post(reverse("account_reset_password"), {"email": "carol@example.org"})
    assert len(mail.outbox) == 1 and "carol" in mail.outbox[0].body


@pytest.mark.django_db
def test_profile_birth_year_and_gender(client):
    user = make_user()
    client.force_login(user)
    assert client.post(reverse("profile"), {"birth_year": "1990", "gender": "female"}).status_code == 302
    profile = PlayerProfile.objects.get(user=user)
    assert (profile.birth_year, profile.gender) == (1990, "female")
    bad = client.post(reverse("profile"), {"birth_year": "2030", "gender": "robot"})
    assert bad.status_code == 400
    profile.refresh_from_db()
    assert (profile.birth_year, profile.gender) == (1990, "female")


@pytest.mark.django_db
def test_api_token(api_client):
    make_user("dave")
    response = api_client.post("/api/auth/token/", {"username": "dave", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.get("/api/photos/").status_code == 200
    assert api_client.post("/api/auth/token/", {"username": "dave", "password": "nope"}).status_code == 400


def test_social_providers_only_with_keys():
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','appareal_site.settings'); django.setup();"
        "from django.conf import settings; print(sorted(settings.SOCIALACCOUNT_PROVIDERS))"
    )
    plain = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if not k.startswith(("FACEBOOK_", "GOOGLE_"))})
    assert plain.stdout.strip() == "[]", plain.stderr
    keyed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "FACEBOOK_CLIENT_ID": "id", "FACEBOOK_SECRET": "s"})
    assert keyed.stdout.strip() == "['facebook']", keyed.stderr


@pytest.mark.django_db
def test_demo_admin_created_once():
    from io import StringIO

    from django.core.management import call_command

    first, second = StringIO(), StringIO()
    call_command("ensure_demo_admin", stdout=first)
    call_command("ensure_demo_admin", stdout=second)
    assert "password:" in first.getvalue() and "password:" not in second.getvalue()
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
