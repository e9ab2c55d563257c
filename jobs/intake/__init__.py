"""A job's intake: what a request becomes before its life begins.

    admission       the cheap checks before anything is read (the plan, the backend, the balance)
    quotes          a price quoted ahead, held for a submission that names it
    result_cache    identical work of the user's served again, at a fraction of its price
    submission      charge and create a job (idempotency keys), retry a failed one
    transcribe      the automatic transcription of a newly ready file, and the answer to a client who
                    asks for that same work (that job, charged nothing more)

Money moves only through credits' services: the charge is in the submission's transaction, and
the refund in the same transaction as the move to `failed`/`canceled` (jobs.life.status).
"""
