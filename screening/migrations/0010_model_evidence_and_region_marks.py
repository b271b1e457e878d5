"""Model versions carry their evidence; per-image results keep their region marks.

Versions registered before this carry no evidence, so they are not validated for triage:
their scores stop ordering the worklist (re-registering the artifact loads its evidence).
"""

from django.db import migrations, models


def stop_unvalidated_ordering(apps, schema_editor):
    Case = apps.get_model("screening", "Case")
    Case.objects.filter(triage_priority__gte=0).update(triage_priority=-1.0)


class Migration(migrations.Migration):
    dependencies = [("screening", "0009_access_tokens_and_lockouts")]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="evidence",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="airesult",
            name="marks",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("login", "Logged in"),
                    ("login_failed", "Failed login"),
                    ("logout", "Logged out"),
                    ("case_opened", "Case opened"),
                    ("read_recorded", "Read recorded"),
                    ("read_conflict", "Read refused (conflict)"),
                    ("study_uploaded", "Study uploaded"),
                    ("upload_rejected", "Upload rejected"),
                    ("model_activated", "Model activated"),
                    ("model_evidence", "Model evidence loaded"),
                    ("ai_retried", "AI retried"),
                    ("export", "Export"),
                    ("outcome_recorded", "Outcome recorded"),
                    ("dicom_exported", "AI result exported as DICOM"),
                    ("dicom_export_refused", "DICOM export refused"),
                    ("roles_changed", "Roles changed"),
                    ("password_set", "Password set by an admin"),
                    ("token_issued", "API token issued"),
                    ("token_revoked", "API token revoked"),
                    ("login_locked_out", "Sign-in locked out"),
                    ("login_unlocked", "Sign-in unlocked"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(stop_unvalidated_ordering, migrations.RunPython.noop),
    ]
