from django.core.management.base import BaseCommand

from labeling.services.accounts import ensure_demo_admin


class Command(BaseCommand):
    help = "Create a demo superuser if the site has none, and print its password once."

    def handle(self, *args, **options):
        user, password = ensure_demo_admin()
        if password is None:
            self.stdout.write(f"Admin account exists: {user.username}")
            return
        self.stdout.write(self.style.SUCCESS("Created the demo admin (shown only this once):"))
        self.stdout.write(f"  username: {user.username}\n  password: {password}\n  log in at http://127.0.0.1:8000/accounts/login/")
