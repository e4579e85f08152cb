import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appareal_site.settings")
django_application = get_wsgi_application()

# Token-authenticated JSON votes take a lean route in front of Django (fast_vote_route.py, beside this file);
# every other request, and every vote it does not answer itself, goes to Django unchanged.
from appareal_site.fast_vote_route import VoteFastPath  # noqa: E402  (needs the apps loaded above)

application = VoteFastPath(django_application)
