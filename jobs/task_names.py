"""The names of the jobs app's own tasks (jobs/tasks.py; the pipeline steps' names are
`jobs.life.publish.step_task_name`), for those that send them by name: nothing below the tasks
imports them (the tasks are a leaf that imports everything else)."""

TRANSCRIPT_TO_EDL = "jobs.transcript_to_edl"
REPLACE_IN_TIMELINE = "jobs.replace_in_timeline"
REAP = "jobs.reap"
DEADLINES = "jobs.deadlines"
STOP_CALL = "jobs.stop_call"
ANALYZE_AFTER_INSERT = "jobs.analyze_after_insert"
MEDIA_VERDICT = "jobs.media_verdict"
