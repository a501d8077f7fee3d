"""django-allauth adapter: sign-up is closed unless CHOSEN_SIGNUP_OPEN is set; leads create
or invite annotators from the admin instead.

E-mail addresses are stored lower-case. allauth lower-cases what a person types on its
log-in and password-reset forms and then looks it up *exactly* in its EmailAddress rows and
in User.email (``allauth.account.internal.userkit.filter_users_by_email``), so an address
stored with a capital (``Ada.Lovelace@example.org``) matched nothing, however it was typed.
``canonical_email`` is the one rule for storing an address. Addresses stored otherwise
(before it, or by a door that does not use it: ``createsuperuser``, Django's user admin)
are lower-cased: all of them by migration ``tasks.0010_email_addresses_lower_case`` (a
frozen copy of ``store_lower_case``), and the address typed at log-in or password reset by
the adapter below, before allauth looks it up.
"""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction


def canonical_email(address: str) -> str:
    """How an e-mail address is stored and compared: stripped and wholly lower-case."""
    return address.strip().lower()


def store_lower_case(address: str) -> bool:
    """Store ``address`` lower-case wherever its one account holds it in another case:
    the account's EmailAddress rows for it become one (primary or verified if any of them
    was) and its User.email is lower-cased. An address that several accounts hold, in
    whatever case, is left alone: which of them it means is for a superuser to decide.
    Returns whether anything was changed.
    """
    if not isinstance(address, str) or "@" not in address:
        return False
    email = canonical_email(address)
    User = get_user_model()
    if not (
        EmailAddress.objects.filter(email__iexact=email).exclude(email=email).exists()
        or User.objects.filter(email__iexact=email).exclude(email=email).exists()
    ):
        return False
    try:
        with transaction.atomic():
            rows = list(EmailAddress.objects.select_for_update().filter(email__iexact=email))
            accounts = list(User.objects.select_for_update().filter(email__iexact=email))
            owners = {row.user_id for row in rows} | {account.pk for account in accounts}
            if len(owners) != 1:
                return False
            if rows:
                keep = next((r for r in rows if r.email == email), None)
                keep = keep or next((r for r in rows if r.primary), rows[0])
                primary = any(r.primary for r in rows)
                verified = any(r.verified for r in rows)
                EmailAddress.objects.filter(pk__in=[r.pk for r in rows if r.pk != keep.pk]).delete()
                EmailAddress.objects.filter(pk=keep.pk).update(
                    email=email, primary=primary, verified=verified
                )
            User.objects.filter(pk__in=[a.pk for a in accounts]).exclude(email=email).update(
                email=email
            )
    except IntegrityError:  # a concurrent change got there first; it is looked up as is
        return False
    return True


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return settings.ACCOUNT_SIGNUP_OPEN

    def pre_authenticate(self, request, **credentials) -> None:
        # After the rate limit (which raises when it is spent), before allauth's exact
        # lookup of the lower-cased address.
        super().pre_authenticate(request, **credentials)
        store_lower_case(credentials.get("email"))

    def clean_email(self, email: str) -> str:
        # Every form that takes an address calls this before looking it up (password
        # reset, adding an address, sign-up): a reset finds the account, and an address
        # held in another case counts as taken.
        store_lower_case(email)
        return super().clean_email(email)
