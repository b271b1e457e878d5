"""Cases scored by a version not validated for triage leave their band (issue 21): the
stored ``risk_band`` the worklist filters on becomes "unvalidated", so ``?band=high`` can
never triage by such a version."""

from django.db import migrations, models

RANKING = ["high", "intermediate", "low"]


def unrank(apps, schema_editor):
    from ml import evidence

    ModelVersion = apps.get_model("screening", "ModelVersion")
    Case = apps.get_model("screening", "Case")
    for version in ModelVersion.objects.all():
        if not evidence.triage_validated(version.evidence):
            Case.objects.filter(
                ai_result__model_version=version, risk_band__in=RANKING
            ).update(risk_band="unvalidated")


def rank_again(apps, schema_editor):
    """Back to the bands the old code stored: the version's cuts, else its threshold's."""
    import numpy as np

    from ml import evidence

    ModelVersion = apps.get_model("screening", "ModelVersion")
    Case = apps.get_model("screening", "Case")
    for version in ModelVersion.objects.all():
        cases = Case.objects.filter(ai_result__model_version=version, risk_band="unvalidated")
        for case in cases.exclude(ai_score=None):
            scores = np.asarray([case.ai_score], float)
            found = evidence.bands(scores, version.evidence)
            if found is None:
                found = evidence.cut_bands(scores, version.threshold / 2, version.threshold)
            Case.objects.filter(pk=case.pk).update(risk_band=str(found[0]))


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0014_read_draft"),
    ]

    operations = [
        migrations.AlterField(
            model_name="case",
            name="risk_band",
            field=models.CharField(
                choices=[
                    ("high", "High"),
                    ("intermediate", "Intermediate"),
                    ("low", "Low"),
                    ("pending", "AI pending"),
                    ("failed", "AI failed"),
                    ("unvalidated", "AI not validated"),
                ],
                default="pending",
                editable=False,
                max_length=12,
            ),
        ),
        migrations.RunPython(unrank, rank_again),
    ]
