"""EDL documents stored structured: every ``edl`` document whose tracks and transcript are packed
into one text field (``content_z``), or that has no ``media_ids``, is rewritten in the form the
store writes now (projects/edl/structuring.py: batched, each document by a write guarded by its
version, so a concurrent save is never lost; rerun after a crash, it carries on with what is left).
History snapshots keep their packed form (read by undo/redo only). The MongoDB store must be
reachable (MONGODB_URI), as for the API.
"""

from django.db import migrations


def structure(apps, schema_editor):
    from projects.edl.structuring import edl_structure_all

    report = edl_structure_all()
    if report.skipped:
        # Not recorded as applied: the next `migrate` carries on with these.
        raise RuntimeError(f"{report.skipped} EDL document(s) were saved on every attempt; run migrate again.")


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0008_comments"),
    ]

    operations = [
        migrations.RunPython(structure, migrations.RunPython.noop),
    ]
