from django.dispatch import Signal

# Sent inside the deleting transaction, before the project row goes, with `project_id`.
# The jobs app connects to it to cancel (and refund) the project's unfinished jobs: apps import
# downwards only and jobs sits above projects, so the dependency points the other way.
project_deleting = Signal()
