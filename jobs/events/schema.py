"""The job events a client receives, described as exactly as the REST API: JSON Schema (2020-12).

One event has one shape wherever it arrives:
- Server-Sent Events (`GET /api/v1/jobs/{id}/stream`, `GET /api/v1/events/stream`): each `data:`
  line is a `JobEvent`; the stream's own `gap` and `error` events are `StreamGap` and `Error`;
  with `?comments=true`, a `comment.*` event is a `CommentEvent`; with `?batches=true`, a batch's
  `batch.progress` and `batch.completed` are `BatchEvent`s.
- WebSocket (`/api/v1/ws`): the server's messages are `WsServerMessage`; a `job.event` carries the
  same `JobEvent`, a `comment.event` (after `{"type": "subscribe", "comments": true}`) a
  `CommentEvent`, a `batch.event` (after `{"type": "subscribe", "batches": true}`) a `BatchEvent`;
  with `?account=true` (`{"type": "subscribe", "account": true}`), a `spend_cap.threshold` event is
  a `SpendCapEvent` and an `account.review_hold` event a `ReviewHoldEvent` (an `account.event` message).
- `GET /api/v1/jobs/{id}/events`: the same `type` and `data`, with the record's own id.
Webhooks deliver the job itself (the OpenAPI document's `JobDetail`) in the Standard Webhooks
envelope `{type, timestamp, data}` (`WebhookPayload`).

Each event type's `data` is closed: a key the server writes and this document does not name fails
the test that validates every event the suite emits (tests/jobs/test_event_schema.py). Served at
`GET /api/schema/events/` and linked from the OpenAPI document's description.
"""

from __future__ import annotations

import functools
from typing import Any

from jobs.events.stream import COMMENT_CHANGES
from jobs.models import JobEventType, JobStatus
from webhooks.models import PAYLOAD_TYPES, TEST_PAYLOAD_TYPE

_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_INT: dict[str, Any] = {"type": "integer"}
_TEXT: dict[str, Any] = {"type": "string"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": sorted(required),
            "additionalProperties": False, **extra}


# An object with these properties and no other (jobs/output_schema.py builds with it too).
closed_object = _object

_CHARGE = _object({"charged": _INT, "refunded": _INT, "net": _INT},
                  description="The ledger's figures for the job as it ended: charged, refunded, net credits.")
_CACHE = _object({"hit": {"const": True}, "source_job_id": _UUID},
                 description="Served from the result cache: the earlier job whose outputs were copied.")

# What each type's `data` holds (jobs.models.JobEventType says when each is recorded).
EVENT_DATA: dict[str, dict[str, Any]] = {
    JobEventType.SUBMITTED: _object({"credits_cost": _INT}, {"cache": _CACHE, "batch_id": _UUID}),
    JobEventType.REPUBLISHED: _object({}),
    JobEventType.REPOLLED: _object({"step": _TEXT}),
    JobEventType.QUEUED: _object({"running": _INT, "waiting_for": {"enum": ["slot", "capacity", ""]}}),
    JobEventType.STARTED: _object({}),
    JobEventType.INFERENCE_STARTED: _object(
        {"call_id": _TEXT}, {"attempt": _INT, "pieces": _INT, "speakers": {"type": "boolean"}},
        description="A GPU call spawned; a long file's: `call_id` is `pieces`, with their count."),
    JobEventType.INFERENCE_RETRY: _object({"code": _TEXT, "attempt": _INT}, {"piece": _INT, "gpu": _TEXT}),
    JobEventType.PROGRESS: _object({"progress": {"type": "integer", "minimum": 0, "maximum": 100}}),
    JobEventType.STEP_RETRY: _object({"step": _TEXT, "code": _TEXT}),
    JobEventType.STEP_REDELIVERED: _object({"step": _TEXT}),
    JobEventType.COMPLETED: _object({"output_media_ids": {"type": "array", "items": _UUID}, "charge": _CHARGE},
                                    {"cache": _CACHE}),
    JobEventType.FAILED: _object({"code": _TEXT, "message": _TEXT, "retryable": {"type": "boolean"},
                                  "refunded": _INT, "charge": _CHARGE}),
    JobEventType.CANCELED: _object({"reason": _TEXT, "refunded": _INT, "charge": _CHARGE}),
    JobEventType.ABORTED: _object({"code": {"enum": ["start_deadline", "queue_ttl"]}, "refunded": _INT,
                                   "charge": _CHARGE}),
    JobEventType.OUTPUT_RELEASED: _object(
        {"output_media_ids": {"type": "array", "items": _UUID}, "charged": _INT},
        description="After a failed `output_moderated`: staff released the withheld output, now these media "
                    "files, and the job was charged `charged` credits for it. The job stays failed."),
}

JOB_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One job event, as a stream delivers it.",
    "properties": {
        "id": {"type": "string", "pattern": r"^\d+-\d+$",
               "description": "The stream's id of the event: resume after it (Last-Event-ID, `resume`)."},
        "record_id": {"type": "integer", "description": "The same event's id in GET /jobs/{id}/events."},
        "job_id": _UUID,
        "type": {"enum": sorted(EVENT_DATA)},
        "data": {"type": "object"},
        "status": {"enum": list(JobStatus.values), "description": "The job's status as the event left it."},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "created_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "record_id", "job_id", "type", "data", "status", "progress", "created_at"],
    "additionalProperties": False,
    "allOf": [{"if": {"properties": {"type": {"const": kind}}},
               "then": {"properties": {"data": {"$ref": f"#/$defs/{kind}"}}}} for kind in sorted(EVENT_DATA)],
}
_NULLABLE_UUID: dict[str, Any] = {"type": ["string", "null"], "format": "uuid"}
_NULLABLE_INT: dict[str, Any] = {"type": ["integer", "null"]}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
COMMENT: dict[str, Any] = _object(
    {"id": _UUID, "parent_id": _NULLABLE_UUID, "member_id": _UUID, "text": _TEXT, "start_ms": _NULLABLE_INT,
     "end_ms": _NULLABLE_INT, "edl_version": _NULLABLE_INT, "resolved_at": {"type": ["string", "null"],
                                                                              "format": "date-time"},
     "resolved_by": _NULLABLE_UUID, "created_at": _TIME, "updated_at": _TIME},
    description="A comment as GET /projects/{id}/comments shows it.")
COMMENT_EVENT: dict[str, Any] = _object(
    {"id": {"type": "string", "pattern": r"^\d+-\d+$"},
     "type": {"enum": [f"comment.{change}" for change in COMMENT_CHANGES]},
     "project_id": _UUID, "member_id": {**_UUID, "description": "Who made the change."},
     "comment": {"$ref": "#/$defs/Comment"}, "created_at": _TIME},
    description="A change of a comment on a project's timeline (a deleted one as it was; a thread's "
                "deletion takes its replies), on the all-events streams that ask for comments.")
SPEND_CAP_EVENT: dict[str, Any] = _object(
    {"id": {"type": "string", "pattern": r"^\d+-\d+$"}, "type": {"const": "spend_cap.threshold"},
     "alert_id": {"type": "integer", "description": "The same alert in every announcement of it."},
     "cap": {"enum": ["workspace", "key", "member"]}, "threshold": {"enum": [50, 80, 100]},
     "monthly_limit": {"type": "integer"}, "spent": {"type": "integer", "description": "After the charge."},
     "month": {"type": "string", "pattern": r"^\d{4}-\d{2}$"}, "resets_at": _TIME, "job_id": _NULLABLE_UUID,
     "created_at": _TIME},
    {"key_id": _UUID, "member_id": _UUID},
    description="A threshold (50, 80, 100 %) of a spend cap's monthly limit crossed by a charge, once a month "
                "each, on the all-events streams that ask for the account's events; webhooks subscribed to "
                "`spend_cap` get the same as `data` of a `spend_cap.threshold` payload.")
REVIEW_HOLD_EVENT: dict[str, Any] = _object(
    {"id": {"type": "string", "pattern": r"^\d+-\d+$"}, "type": {"const": "account.review_hold"},
     "state": {"enum": ["held", "lifted"], "description": "`held`: generative requests are refused "
                                                         "(403 `account_under_review`) until staff lift it."},
     "reason": {"enum": ["refusals", "zero_tolerance", "outputs"], "description": "Why it was held."},
     "created_at": _TIME},
    description="The account's generative requests held for staff review after repeated content policy "
                "refusals, or the hold lifted by staff, on the all-events streams that ask for the account's "
                "events; webhooks subscribed to `review_hold` get the same as `data` of an `account.review_hold` "
                "payload.")
BATCH_EVENT: dict[str, Any] = _object(
    {"id": {"type": "string", "pattern": r"^\d+-\d+$"}, "type": {"enum": ["batch.progress", "batch.completed"]},
     "batch_id": _UUID, "item_count": _INT,
     "counts": {"type": "object", "additionalProperties": _INT, "description": "Its items in each status."},
     "ended": _INT, "done": {"type": "boolean"}, "credits_cost": _INT, "credits_refunded": _INT, "created_at": _TIME},
    description="A batch's progress as its items end (at most about one a second), and its end once every item "
                "has ended (`batch.completed`, once), on the all-events streams that ask for batches; webhooks "
                "subscribed to `batch` "
                "get the completed one as `data` of a `batch.completed` payload.")
ERROR: dict[str, Any] = _object({"error": _object({"code": _TEXT, "message": _TEXT}, {"details": {"type": "object"}})})
STREAM_GAP: dict[str, Any] = _object({"after": {"type": ["string", "null"]}, "message": _TEXT},
                                     description="Events after `after` are no longer in the stream window.")
WS_SERVER_MESSAGE: dict[str, Any] = {"oneOf": [
    _object({"type": {"const": "ready"}}),
    _object({"type": {"const": "subscribed"}, "job_id": _UUID}),
    _object({"type": {"const": "subscribed"}, "comments": {"const": True}}),
    _object({"type": {"const": "subscribed"}, "account": {"const": True}}),
    _object({"type": {"const": "subscribed"}, "batches": {"const": True}}),
    _object({"type": {"const": "job.event"}, "job_id": _UUID, "event": {"$ref": "#/$defs/JobEvent"}}),
    _object({"type": {"const": "comment.event"}, "project_id": _UUID, "event": {"$ref": "#/$defs/CommentEvent"}}),
    _object({"type": {"const": "account.event"},
             "event": {"oneOf": [{"$ref": "#/$defs/SpendCapEvent"}, {"$ref": "#/$defs/ReviewHoldEvent"}]}}),
    _object({"type": {"const": "batch.event"}, "batch_id": _UUID, "event": {"$ref": "#/$defs/BatchEvent"}}),
    _object({"type": {"const": "gap"}, "after": {"type": ["string", "null"]}}),
    _object({"type": {"const": "ping"}}),
    _object({"type": {"const": "pong"}}),
]}
WEBHOOK_PAYLOAD: dict[str, Any] = _object(
    {"type": {"enum": [*PAYLOAD_TYPES.values(), TEST_PAYLOAD_TYPE]},
     "timestamp": {"type": "string", "format": "date-time"},
     "data": {"type": "object", "description": "The job as GET /api/v1/jobs/{id} shows it (OpenAPI `JobDetail`); "
                                               "`job.completed` is sent for every end, its `status` says which; "
                                               "for `batch.completed`, a `BatchEvent` without `id`; for "
                                               "`account.review_hold`, a `ReviewHoldEvent` without `id`."}},
    description="A webhook delivery's body (Standard Webhooks: signed with webhook-id, webhook-timestamp, "
                "webhook-signature headers).")


def event_schema() -> dict[str, Any]:
    """The whole document: every message above under `$defs`, events by their type's name."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/api/schema/events/",
        "title": "Auteur job events",
        "description": __doc__,
        "$defs": {"JobEvent": JOB_EVENT, "CommentEvent": COMMENT_EVENT, "Comment": COMMENT,
                  "SpendCapEvent": SPEND_CAP_EVENT, "ReviewHoldEvent": REVIEW_HOLD_EVENT, "BatchEvent": BATCH_EVENT,
                  "StreamGap": STREAM_GAP, "Error": ERROR,
                  "WsServerMessage": WS_SERVER_MESSAGE, "WebhookPayload": WEBHOOK_PAYLOAD, **EVENT_DATA},
    }


def schema_validator(document: dict[str, Any], definition: str) -> Any:
    """A validator of the document's `$defs/<definition>` (build it once: jobs/output_schema.py too)."""
    import jsonschema

    return jsonschema.Draft202012Validator({**document, "$ref": f"#/$defs/{definition}"},
                                           format_checker=jsonschema.FormatChecker())


def schema_errors(validator: Any, instance: Any) -> list[str]:
    """What in `instance` breaks the validator's schema, one line each (empty when it validates)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@functools.lru_cache(maxsize=32)
def _validator(definition: str) -> Any:
    return schema_validator(event_schema(), definition)


def event_errors(instance: Any, definition: str = "JobEvent") -> list[str]:
    """What in `instance` breaks `$defs/<definition>` (empty when it validates); for the tests."""
    return schema_errors(_validator(definition), instance)
