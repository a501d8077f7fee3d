from django.db import migrations, models


class Migration(migrations.Migration):
    """Every job kind keeps its failure reason in ``error`` (tasks.lifecycle); an import
    also keeps its per-row ``errors`` list, which its failure reason prefers."""

    dependencies = [
        ("tasks", "0008_candidate_hash_keeps_case_and_unicode"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="error",
            field=models.TextField(blank=True),
        ),
    ]
