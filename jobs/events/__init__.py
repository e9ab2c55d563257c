"""What a job tells: its event log and where each event goes.

    record     the job's event log, mirrored to the user's event stream and webhooks
    stream     appending each committed event to the user's Redis Stream
    webhooks   a job's events to its webhooks
    usage      one usage event per ended job
    schema     the published schema of every event's data

Nothing here imports a job's life or its intake: they record, this keeps.
"""
