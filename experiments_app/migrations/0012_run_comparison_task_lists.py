from django.db import migrations, models

LISTS = {"improved": "comparison_improved", "regressed": "comparison_regressed"}


def move_task_lists_out_of_aggregates(apps, schema_editor):
    """A stored comparison's improved/regressed task ids leave `aggregates` for their own
    text columns (results.py: the page skips them, the API writes them unparsed)."""
    import json

    Run = apps.get_model("experiments_app", "Run")
    stored = Run.objects.filter(aggregates__vs_baseline__comparison__isnull=False)
    for run in stored.only("pk", "aggregates").iterator(chunk_size=20):
        comparison = run.aggregates["vs_baseline"]["comparison"]
        columns = {
            column: json.dumps(comparison.pop(name), separators=(",", ":")) for name, column in LISTS.items() if name in comparison
        }
        if columns:
            Run.objects.filter(pk=run.pk).update(aggregates=run.aggregates, **columns)


def move_task_lists_back(apps, schema_editor):
    import json

    Run = apps.get_model("experiments_app", "Run")
    stored = Run.objects.filter(aggregates__vs_baseline__comparison__isnull=False)
    for run in stored.only("pk", "aggregates", *LISTS.values()).iterator(chunk_size=20):
        comparison = run.aggregates["vs_baseline"]["comparison"]
        for name, column in LISTS.items():
            if getattr(run, column) is not None:
                comparison[name] = json.loads(getattr(run, column))
        Run.objects.filter(pk=run.pk).update(aggregates=run.aggregates)


class Migration(migrations.Migration):

    dependencies = [
        ("experiments_app", "0011_verdicts_alpha_guardrails_control_live"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="comparison_improved",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="comparison_regressed",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.RunPython(move_task_lists_out_of_aggregates, move_task_lists_back),
    ]
