"""Candidates of one prompt are compared as written (issue 15): recompute their hashes.

Until now ``Candidate.content_hash`` folded Unicode compatibility forms, case and all
whitespace, as a prompt's hash does, so an import skipped ``𝔘𝔫𝔦𝔠𝔬𝔡𝔢`` as a copy of
``UNICODE``. Rows stored that way get the new hash here, or a re-import of the same file
would add every one of them again. The texts are not touched.

Texts equal under the new rule were equal under the old one (it folded line endings and
trailing whitespace too), so no two candidates of one prompt can get one hash here.
"""

import unicodedata
from hashlib import sha256

from django.db import migrations, models

BATCH = 2000


# Both rules as they stand at this migration, copied so that a later change of
# tasks.importers.rows cannot change what this migration did.
def candidate_hash(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    return sha256(text.encode("utf-8")).hexdigest()


def folded_hash(text: str) -> str:
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return sha256(folded.encode("utf-8")).hexdigest()


def rehash(apps, rule) -> None:
    Candidate = apps.get_model("tasks", "Candidate")
    changed = []
    for candidate in Candidate.objects.only("pk", "text", "content_hash").iterator(
        chunk_size=BATCH
    ):
        digest = rule(candidate.text)
        if digest != candidate.content_hash:
            candidate.content_hash = digest
            changed.append(candidate)
        if len(changed) >= BATCH:
            Candidate.objects.bulk_update(changed, ["content_hash"])
            changed = []
    Candidate.objects.bulk_update(changed, ["content_hash"])


def forwards(apps, schema_editor):
    rehash(apps, candidate_hash)


def backwards(apps, schema_editor):
    # Fails on the unique constraint when a prompt has gained candidates that only the
    # old rule calls the same (e.g. "UNICODE" and "unicode"): the old code could not tell
    # them apart, so remove one of them first.
    rehash(apps, folded_hash)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0007_audit_trail_and_org_mfa"),
    ]

    operations = [
        migrations.AlterField(
            model_name="candidate",
            name="content_hash",
            field=models.CharField(
                help_text="SHA-256 of the text with LF line endings and no trailing whitespace "
                "(tasks.importers.rows.candidate_hash); the text itself is stored as received.",
                max_length=64,
            ),
        ),
        migrations.RunPython(forwards, backwards, elidable=True),
    ]
