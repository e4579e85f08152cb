"""allauth hook: every new account gets its player profile at sign-up."""
from allauth.account.adapter import DefaultAccountAdapter

from labeling.services.uploads import ensure_profile


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            ensure_profile(user)
        return user
