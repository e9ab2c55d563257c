"""Every write of the jobs app, one module per stage of a job's life.

Every step is idempotent because delivery is at-least-once: each re-reads the job and moves it
with a conditional UPDATE (`filter(pk=..., status=X).update(...)`), so a redelivered or duplicate
step finds the work done and does nothing twice. Money moves only through credits' services:
the charge is in the submission's transaction, and the refund in the same transaction as the
move to `failed`/`canceled`, which only one caller can win; the ledger's unique constraint on
(job, refund) backs that up.

    submission   charge and create a job (idempotency keys), retry a failed one
    slots        claim one of the user's concurrency slots, start waiting jobs as slots free
    inference    spawn the GPU call, look at it, record progress
    steps        what each pipeline step does with those
    outputs      store the results and complete the job
    lifecycle    the other ends: fail (with refund), cancel (with refund)
    transcribe   the automatic transcription of a newly ready file
    reaper       no job stays non-terminal forever
    events       the job's event log
"""
