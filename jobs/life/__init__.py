"""A job's life, from its claim to its end: modules whose imports run one way, bottom to top.

    publish        publishing a step or task by name (nothing here imports jobs/tasks.py); stopping a call
    fairshare      each job type's GPU units and whose waiting job starts next when one frees
    slots          a user's concurrency slots; starting waiting jobs as slots free
    windows        how long a job may wait to start: the client's limit, its type's queue TTL
    refunds        how much a failed or canceled job gets back
    pieces         a long file's job run as pieces: their plan, their calls, their joining
    transcript_edl a finished transcription written into its project's timeline
    timeline_swap  a finished file put in its source's place in the timeline, when asked
    scheduling     whether a job starts now or waits, and for what (status reaches slots and fair share only here)
    status         every change of a job's status, and only there: claim, finishing, complete, fail, cancel, abort
    bulk           many jobs canceled by filter at once (a batch's backlog), each as its own cancel would be
    deliveries     a step whose message keeps coming back without finishing fails its job
    inference      spawn the GPU call, look at it, record its start and progress
    outputs        store a finished call's result, then complete the job
    steps          what each pipeline step does (prepare, infer, finish)
    deadlines      start and run deadlines, queue TTLs: abort or cancel the jobs past theirs
    announcements  the consumer of GPU calls' announcements (`manage.py gpu_events`)
    reaper         no job stays non-terminal forever

Each module imports only those above it in this list (tests/test_layering.py refuses a cycle),
and `jobs/tasks.py`, the Celery tasks, sits on top of them all. A job is created (charged and
`pending`) by `jobs/intake/submission.py`.
"""
