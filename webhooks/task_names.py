"""The names of the webhook tasks (webhooks/tasks.py), for those that send them by name."""

DELIVER = "webhooks.deliver"
SWEEP = "webhooks.sweep"
