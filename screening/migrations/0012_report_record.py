"""PostgreSQL: each case's columns for the auditor's figures as one stored binary record.

The database writes ``report_record`` whenever the case row changes (a generated column: no
verb has to remember it), so the figures over a million screens read one value per case
instead of evaluating a dozen expressions per case on every request. The layout is
``screening.audit.report_data.RECORD_LAYOUT``; changing one means a migration for the other.
Elsewhere (SQLite) the figures read the typed columns and this migration does nothing.
"""

from django.db import migrations

RECORD = """
    int8send(id)
    || timestamptz_send(received_at)
    || timestamptz_send(coalesce(closed_at, received_at))
    || int4send(((CASE outcome WHEN '' THEN 0 WHEN 'malignant' THEN 2 ELSE 1 END))
        | ((status = 'closed')::int << 2)
        | ((closed_at IS NOT NULL)::int << 3)
        | (coalesce(first_recall::int + 1, 0) << 4)
        | (coalesce(first_agrees::int + 1, 0) << 10)
        | (coalesce(second_recall::int + 1, 0) << 6)
        | (coalesce(second_agrees::int + 1, 0) << 12)
        | (coalesce(arbitration_recall::int + 1, 0) << 8)
        | (coalesce(arbitration_agrees::int + 1, 0) << 14))
    || int8send((coalesce(first_reader_id, 0)::int8 << 0)
        | (coalesce(second_reader_id, 0)::int8 << 21)
        | (coalesce(arbitration_reader_id, 0)::int8 << 42))
    || int8send(coalesce(first_seconds::int8, 4294967295)
        | (coalesce(second_seconds::int8, 4294967295) << 32))
    || int4send(coalesce(arbitration_seconds::int8, 4294967295)::bit(32)::int4)
    || int8send((coalesce(first_seen_version_id, 0)::int8 << 0)
        | (coalesce(second_seen_version_id, 0)::int8 << 21)
        | (coalesce(arbitration_seen_version_id, 0)::int8 << 42))
"""


def add_record(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE screening_case ADD COLUMN report_record bytea "
            f"GENERATED ALWAYS AS ({RECORD}) STORED"
        )


def drop_record(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE screening_case DROP COLUMN report_record")


class Migration(migrations.Migration):
    dependencies = [("screening", "0011_read_gist_on_case")]

    operations = [migrations.RunPython(add_record, drop_record)]
