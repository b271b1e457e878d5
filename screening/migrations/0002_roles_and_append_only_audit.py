"""Create the three role groups, and on PostgreSQL make the audit table refuse UPDATE and DELETE."""

from django.db import migrations

ROLES = ("radiologist", "admin", "auditor")

TRIGGER = """
CREATE OR REPLACE FUNCTION screening_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'screening_auditevent is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER screening_auditevent_no_change
    BEFORE UPDATE OR DELETE ON screening_auditevent
    FOR EACH ROW EXECUTE FUNCTION screening_auditevent_append_only();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS screening_auditevent_no_change ON screening_auditevent;
DROP FUNCTION IF EXISTS screening_auditevent_append_only();
"""


def create_roles(apps, schema_editor):
    group = apps.get_model("auth", "Group")
    for name in ROLES:
        group.objects.get_or_create(name=name)


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("screening", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
