"""Comments on a project's timeline: threads at a time range, their replies, resolving them."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from auteur.core.quotas import quota_check
from auteur.users.workspace_context import KEY_ROLE, Seat
from projects.errors import CommentNotFound, NotTheAuthor
from projects.models import Comment, Project
from projects.signals import comment_changed


def _announce(comment: Comment, change: str, member_id: uuid.UUID) -> None:
    """Once the change commits: tell whoever follows the workspace's comments (projects.signals)."""
    # Robust: the change committed; a receiver that fails is logged, and the request still answers.
    transaction.on_commit(lambda: comment_changed.send(sender=Comment, comment=comment, change=change,
                                                       member_id=member_id), robust=True)


def comment_list(*, project: Project, resolved: bool | None = None) -> QuerySet[Comment]:
    """The project's comments, replies included, oldest first; `resolved` keeps the threads
    resolved (True) or open (False) and their replies."""
    comments = Comment.objects.filter(project=project)
    if resolved is not None:
        comments = comments.filter(Q(parent__isnull=True, resolved_at__isnull=not resolved)
                                   | Q(parent__isnull=False, parent__resolved_at__isnull=not resolved))
    return comments.order_by("created_at", "id")


def comment_get(*, project: Project, comment_id: uuid.UUID | str) -> Comment:
    try:
        pk = uuid.UUID(str(comment_id))
    except ValueError:
        raise CommentNotFound("No such comment.") from None
    comment = Comment.objects.filter(project=project, pk=pk).first()
    if comment is None:
        raise CommentNotFound("No such comment.")
    return comment


@transaction.atomic
def comment_create(*, project: Project, member_id: uuid.UUID, text: str, start_ms: int | None = None,
                   end_ms: int | None = None, edl_version: int | None = None,
                   parent_id: uuid.UUID | None = None) -> Comment:
    """A new thread at [start_ms, end_ms] of the timeline as of `edl_version`, or a reply to the
    thread `parent_id` names (a reply to a reply joins its thread). QuotaExceeded past the
    project's `comments` quota."""
    list(Project.objects.select_for_update().filter(pk=project.pk).values_list("pk"))
    quota_check(name="comments", used=Comment.objects.filter(project=project).count())
    parent = None
    if parent_id is not None:
        parent = comment_get(project=project, comment_id=parent_id)
        parent = parent.parent or parent
    comment = Comment.objects.create(
        project=project, user_id=project.user_id, member_id=member_id, parent=parent, text=text,
        start_ms=None if parent else start_ms, end_ms=None if parent else end_ms,
        edl_version=None if parent else edl_version,
    )
    _announce(comment, "created", member_id)
    return comment


def _refused(action: str, seat: Seat | None) -> dict[str, object]:
    """A refusal's details, as every 403 of a workspace names them: the action, the caller's role
    (an API key's: `key`, with the scope it would need, none here)."""
    if seat is None or seat.personal:
        return {"action": action, "role": "owner"}
    return {"action": action, "role": seat.role, **({"scope": None} if seat.role == KEY_ROLE else {})}


def comment_update(*, comment: Comment, member_id: uuid.UUID, text: str | None = None,
                   resolved: bool | None = None, seat: Seat | None = None) -> Comment:
    """Change a comment's text (its author only), or resolve or reopen its thread (any member who
    may comment; a reply resolves its thread). `seat`: the request's (None: the owner's own)."""
    fields = ["updated_at"]
    if text is not None:
        if comment.member_id != member_id:
            raise NotTheAuthor("Only its author changes a comment's text.",
                               details=_refused("comments.author", seat))
        comment.text = text
        fields.append("text")
    if resolved is not None:
        thread = comment.parent or comment
        thread.resolved_at, thread.resolved_by = (timezone.now(), member_id) if resolved else (None, None)
        thread.save(update_fields=["resolved_at", "resolved_by", "updated_at"])
        _announce(thread, "resolved" if resolved else "reopened", member_id)
        if thread.pk == comment.pk:
            comment = thread
    if len(fields) > 1:
        comment.save(update_fields=fields)
        _announce(comment, "edited", member_id)
    return comment


@transaction.atomic
def comment_delete(*, comment: Comment, member_id: uuid.UUID, seat: Seat | None = None) -> None:
    """Delete a comment (with its replies, for a thread): its author, or a member whose role
    moderates comments. `seat`: the request's (None, or a personal workspace's: the owner's own)."""
    moderates = seat is None or seat.personal or seat.may("comments.moderate")
    if comment.member_id != member_id and not moderates:
        raise NotTheAuthor("Only its author, an owner or an admin deletes a comment.",
                           details=_refused("comments.moderate", seat))
    # The project's lock, as a new comment takes it: no reply lands on a thread being deleted.
    list(Project.objects.select_for_update().filter(pk=comment.project_id).values_list("pk"))
    Comment.objects.filter(pk=comment.pk).delete()
    _announce(comment, "deleted", member_id)

