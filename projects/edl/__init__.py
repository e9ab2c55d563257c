"""A project's EDL (timeline): a MongoDB document per project, written under a version.

documents.py     the mongoengine schema, its bounds and per-document limits, its JSON form
store.py         the connection (one per process) and the two collections
field_checks.py  a JSON value checked against mongoengine field definitions, with paths
validation.py    edl_validate: the schema plus the EDL's own rules
versions.py      the version-guarded write (whole, or partial.py's $set) and the snapshots it keeps
partial.py       $set of the changed clips and segments, where the server applies such paths
media_use.py     which projects' timelines play a media file (the media_ids index): media deletion
structuring.py   the data migration of packed documents to the structured form
selectors.py     edl_get, edl_snapshot
services.py      edl_create, edl_replace, edl_edit (a server-side edit, retried over saves), edl_delete
history.py       edl_undo, edl_redo
transcripts.py   a file's transcription mapped onto its clips and written into the transcript
fillers.py       filler words and long pauses marked deleted
apis.py, urls.py the HTTP endpoints
"""
