"""What other apps hear of a workspace's seats (this foundation imports no app: they listen)."""

from django.dispatch import Signal

# A member was given a seat or a role (`seat`, a Membership) by another (`giver`, the Membership of
# whoever invited them or changed their role), inside the transaction that holds the workspace's
# row lock: a receiver's error undoes the change. The credits app bounds the budget of a seat given
# by a member whose own budget an owner sets (credits/services/budgets.py).
seat_given = Signal()
