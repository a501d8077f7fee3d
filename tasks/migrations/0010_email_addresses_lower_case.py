from django.conf import settings
from django.db import migrations
from django.db.models.functions import Lower


def lower_case_addresses(apps, schema_editor):
    """Store every e-mail address lower-case: allauth looks up what is typed lower-cased and
    exactly, so an account stored with a capital could not log in. As
    ``tasks.accounts.store_lower_case`` does (frozen here, with the historical models): an
    account's rows for one address become one, primary or verified if any of them was, and
    User.email follows; an address that several accounts hold, in any case, is left alone.
    """
    EmailAddress = apps.get_model("account", "EmailAddress")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    stored = set(EmailAddress.objects.exclude(email=Lower("email")).values_list("email", flat=True))
    stored |= set(User.objects.exclude(email=Lower("email")).values_list("email", flat=True))
    for email in sorted({address.strip().lower() for address in stored}):
        rows = list(EmailAddress.objects.filter(email__iexact=email))
        accounts = list(User.objects.filter(email__iexact=email))
        if len({row.user_id for row in rows} | {account.pk for account in accounts}) != 1:
            continue
        if rows:
            keep = next((r for r in rows if r.email == email), None)
            keep = keep or next((r for r in rows if r.primary), rows[0])
            EmailAddress.objects.filter(pk__in=[r.pk for r in rows if r.pk != keep.pk]).delete()
            EmailAddress.objects.filter(pk=keep.pk).update(
                email=email,
                primary=any(r.primary for r in rows),
                verified=any(r.verified for r in rows),
            )
        User.objects.filter(pk__in=[a.pk for a in accounts]).update(email=email)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0009_importjob_error"),
        ("account", "0009_emailaddress_unique_primary_email"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(lower_case_addresses, migrations.RunPython.noop)]
