from django.dispatch import Signal

# Sent inside the deleting transaction, before the project row goes, with `project_id`.
# The jobs app connects to it to cancel (and refund) the project's unfinished jobs: apps import
# downwards only and jobs sits above projects, so the dependency points the other way.
project_deleting = Signal()

# Sent once a change of a comment committed, with `comment` (as it is now; a deleted one as it
# was), `change` (created, edited, resolved, reopened or deleted) and `member_id` (who made it).
# The jobs app connects to it to put the change on the workspace's event stream.
comment_changed = Signal()
