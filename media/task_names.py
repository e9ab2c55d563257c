"""The names of the media tasks (media/tasks.py), for those that send them by name: the services
below the tasks cannot import them (the tasks are a leaf that imports the services)."""

PROBE = "media.probe"
DELETE_OBJECTS = "media.delete_objects"
SWEEP = "media.sweep"
HASH_BACKFILL = "media.hash_backfill"
PUBLISH = "media.publish"
