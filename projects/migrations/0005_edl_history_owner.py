"""EDL history snapshots record their project's owner, as EDL documents do: every query of either
collection names the owner as well as the project (projects.edl.store.owned), so the snapshots
written before they recorded it take it from their project's EDL document here. A snapshot whose
EDL document is gone (its project deleted) is left to the retention sweep, which deletes it.
EDL documents have recorded their owner since they were introduced; one that has not takes it
from its project's row. The MongoDB store must be reachable (MONGODB_URI), as for the API.
"""

import uuid

from django.db import migrations


def record_owners(apps, schema_editor):
    from projects.edl.store import edl_collection, history_collection, store_errors

    Project = apps.get_model("projects", "Project")
    with store_errors():
        edls, history = edl_collection(), history_collection()
        for doc in list(edls.find({"user_id": {"$exists": False}}, {"project_id": 1})):
            try:
                owner = Project.objects.filter(pk=uuid.UUID(str(doc["project_id"]))).values_list("user_id", flat=True)
            except ValueError:
                continue
            if owner:
                edls.update_one({"_id": doc["_id"]}, {"$set": {"user_id": str(owner[0])}})
        for project_id in history.distinct("project_id", {"user_id": {"$exists": False}}):
            edl = edls.find_one({"project_id": project_id}, {"user_id": 1})
            if edl is not None and edl.get("user_id"):
                history.update_many(
                    {"project_id": project_id, "user_id": {"$exists": False}}, {"$set": {"user_id": edl["user_id"]}}
                )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0004_row_level_security"),
    ]

    operations = [
        migrations.RunPython(record_owners, migrations.RunPython.noop),
    ]
