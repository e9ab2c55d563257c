"""Signals other apps connect to; media sends them and imports none of its receivers.

``media_ready``
    Sent once a user's upload has been probed and marked ``ready``
    (media.probing.service.media_probe), with ``sender=MediaFile`` and ``media_id`` (a UUID).
    It is sent after the transaction that made the file ready has committed, by the one task
    run whose conditional UPDATE won, so a receiver sees the committed row and a redelivered
    probe does not send it again.

    Delivery is at most once: a worker that dies between the commit and the send loses it.
    A receiver that must not miss a file (the jobs app's automatic transcription, for projects
    with ``auto_transcribe``) should also be idempotent on its own key (one transcription per
    media file) so that a reconciling sweep can call it again safely.

    Receivers run with ``send_robust``: one that raises is logged and does not undo the probe.
    Files stored by jobs (media.services.outputs.media_create_output) do not send it: a job's
    output must not start another job by itself.
"""

from __future__ import annotations

from django.dispatch import Signal

media_ready = Signal()
