"""The pages a player moves through show what they promise (server-side content, not the JS)."""
import pytest
from django.urls import reverse

from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["profile", "vote"])
def test_you_vs_dex_on_profile_and_voting_page(client, name):
    client.force_login(make_user())
    page = client.get(reverse(name)).content.decode()
    assert 'id="you-vs-dex"' in page


def test_profile_shows_player_stats(client):
    me = make_user()
    make_photo(me)
    client.force_login(me)
    page = client.get(reverse("profile"))
    assert page.status_code == 200 and page.context["stats"]["photos_uploaded"] == 1


def test_staff_pages_link_sensitivity_maps(client):
    photo = make_photo()
    client.force_login(make_user(staff=True))
    from labeling.models import PhotoReport

    PhotoReport.objects.create(photo=photo, reporter=make_user(), reason="other")
    assert reverse("photo_maps", args=[photo.pk]) in client.get(reverse("moderation")).content.decode()
    assert 'id="maps-photo"' in client.get(reverse("research")).content.decode()
