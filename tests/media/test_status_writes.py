"""One module changes a media file's status: `media/status.py`. Any other write of it fails here.

Uploads confirm, probes finish and the sweep gives up, each racing the others: every move out of a
state is a conditional UPDATE there, which one caller wins.
"""

from __future__ import annotations

from tests.status_writes import ROOT, Subject, status_writes, writes_outside

OWNER = "media/status.py"
MEDIA = Subject(model="MediaFile", row_name="media", tables=("media_files",))


def test_only_the_status_module_writes_a_media_files_status():
    assert writes_outside(OWNER, MEDIA) == [], "a media file's status is written outside media/status.py"


def test_the_status_module_makes_every_move():
    lines = status_writes((ROOT / OWNER).read_text(), MEDIA, OWNER)
    # born uploading, born ready, to processing, to ready, to rejected, rejected at the deadline.
    assert len(lines) == 6


def test_the_check_finds_each_way_of_writing_it():
    cases = {
        "MediaFile.objects.filter(pk=1).update(status='ready')": 1,
        "MediaFile.objects.create(user=u, status='uploading')": 1,
        "MediaFile(id=i, status=MediaStatus.READY)": 1,
        "media.status = 'rejected'": 1,
        "self.media.status = MediaStatus.READY": 1,
        "source_media.save(update_fields=['status', 'updated_at'])": 1,
        "cursor.execute(\"UPDATE media_files SET status = 'ready' WHERE id = %s\", [i])": 1,
        # Not writes of a media file's status:
        "MediaFile.objects.filter(status='ready').count()": 0,
        "Job.objects.filter(pk=1).update(status='failed')": 0,
        "media.save(update_fields=['name'])": 0,
        "body = {'status': media.status}": 0,
    }
    for source, expected in cases.items():
        assert len(status_writes(source, MEDIA)) == expected, source
