"""The account that pays for a workspace's work, whose limits the workspace's requests and streams share.

A personal workspace's payer is its person. A team workspace's is the person whose account created
it, whether or not they still belong to it (leaving the workspaces one made, after giving them to
another owner, must not multiply one's limits), or the workspace's own account once that person's
account is gone. So every key and every member acting
in any of the workspaces one sign-up made counts against one allowance of requests
(auteur/core/throttling.py), of open streams (realtime/leases.py) and of keys in use
(auteur/users/key_services.py): making more workspaces or more keys does not multiply them.

A workspace's creator is set when it is made and never changes (it becomes null only when that
account is deleted), so each process keeps what it read for a while: a request in a team
workspace, or an API key's, costs no query for it after the first.
"""

from __future__ import annotations

import threading
import uuid

from cachetools import TTLCache

from auteur.core import rls
from auteur.users.models import Workspace
from auteur.users.workspace_context import Seat

# Workspaces whose payer each process remembers, and for how long (a deleted creator's account is
# still charged for this long after, which only makes a limit tighter for a while).
REMEMBERED_WORKSPACES = 10_000
REMEMBER_SECONDS = 600

_payers: TTLCache[uuid.UUID, uuid.UUID] = TTLCache(REMEMBERED_WORKSPACES, ttl=REMEMBER_SECONDS)
# cachetools' caches are not thread-safe, and gunicorn's threaded workers share the process's.
_payers_lock = threading.Lock()


def workspace_payer_id(workspace: Workspace) -> uuid.UUID:
    """The payer of a workspace read from its row."""
    return workspace.created_by_id or workspace.id


def payer_of(seat: Seat) -> uuid.UUID:
    """The payer of the workspace a request acts in (its seat)."""
    if seat.personal:  # a person in their own workspace, who created it
        return seat.workspace_id
    return payer_of_workspace(seat.workspace_id)


def payer_of_workspace(workspace_id: uuid.UUID) -> uuid.UUID:
    """The payer of a workspace by its id, remembered by this process (the workspace's own id for
    one that does not exist)."""
    with _payers_lock:
        payer = _payers.get(workspace_id)
    if payer is None:
        # Read on the owner's login: an API key acts as a team workspace's account, which is no
        # member of it and may not read its row.
        with rls.trusted():
            creator = Workspace.objects.filter(pk=workspace_id).values_list("created_by_id", flat=True).first()
        payer = creator or workspace_id
        with _payers_lock:
            _payers[workspace_id] = payer
    return payer
