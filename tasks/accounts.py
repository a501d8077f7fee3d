"""django-allauth adapter: sign-up is closed unless CHOSEN_SIGNUP_OPEN is set; leads create
or invite annotators from the admin instead."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return settings.ACCOUNT_SIGNUP_OPEN
