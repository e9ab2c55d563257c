"""The jobs app's other services; a job's life from its claim to its end is `jobs.life`.

Every step is idempotent because delivery is at-least-once: each re-reads the job and moves it
with a conditional UPDATE, so a redelivered or duplicate step finds the work done and does
nothing twice. Money moves only through credits' services: the charge is in the submission's
transaction, and the refund in the same transaction as the move to `failed`/`canceled`
(jobs.life.status).

    submission      charge and create a job (idempotency keys), retry a failed one
    events          the job's event log, mirrored to the user's event stream and webhooks
    stream          appending each committed event to the user's Redis Stream
    transcribe      the automatic transcription of a newly ready file
    transcript_edl  writing a transcription into its project's timeline
    retention       the sweeps that keep the tables bounded
    webhooks        a job's events to its webhooks
"""
