"""The event streams in the OpenAPI document: `GET /jobs/{id}/stream` and `GET /events/stream`
are plain ASGI views (realtime/sse.py), not DRF's, so drf-spectacular cannot see them; this hook
adds them with their `text/event-stream` answers, and links the event schema
(jobs/events/schema.py, served at /api/schema/events/) and the output schema (jobs/output_schema.py,
/api/schema/outputs/) from the document's description."""

from __future__ import annotations

from typing import Any

from jobs.events.schema import JOB_EVENT, STREAM_GAP

EVENTS_SCHEMA_URL = "/api/schema/events/"
OUTPUTS_SCHEMA_URL = "/api/schema/outputs/"
_STREAM = ("Server-Sent Events. Each event is `id:` (resume after it with `Last-Event-ID`), `event:` (its type) "
           "and `data:`, a `JobEvent` (its `data` per type in the event schema, " + EVENTS_SCHEMA_URL + "). "
           "`event: gap` (`StreamGap`, no id) when the id resumed from is older than the stream's window; "
           "`event: error` (`Error`) before the stream ends (an expired token: reconnect with a new one and "
           "the last id; in a team workspace, `seat_changed` when the reader's role changed: reconnect, and get "
           "what the new role sees; `workspace_not_found` when their seat ended). A comment line every few seconds "
           "keeps the connection alive.")


def _errors(*codes: tuple[str, str]) -> dict[str, Any]:
    return {status: {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for status, text in codes}


def add_event_streams(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: the two stream paths, and the event schema's link."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["StreamEvent"] = {k: v for k, v in JOB_EVENT.items() if k != "allOf"} | {
        "description": f"One job event as a stream delivers it (the event schema's `JobEvent`); `data` per "
                       f"`type`: {EVENTS_SCHEMA_URL}"}
    components["StreamGap"] = STREAM_GAP
    last_event_id = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
                     "description": "Resume after this event id (the browser's EventSource sends it on reconnect)."}
    ok = {"200": {"description": _STREAM, "content": {"text/event-stream": {
        "schema": {"$ref": "#/components/schemas/StreamEvent"}}}}}
    common = _errors(("401", "Codes: `not_authenticated`, `invalid_token`."),
                     ("429", "Codes: `too_many_streams` (details.limit; details.scope: person, the caller's own "
                            "cap, or account, the one the workspaces of its paying account share): close a "
                            "stream or WebSocket first."),
                     ("503", "Codes: `stream_unavailable` (served by the ASGI server only), `service_unavailable`."))
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    result.setdefault("paths", {})["/api/v1/jobs/{job_id}/stream"] = {"get": {
        "operationId": "jobs_stream", "tags": ["jobs"], "summary": "A job's events, replayed then live (SSE)",
        "description": "Replayed from the start of the stream window (or after Last-Event-ID), then live; ends "
                       "after the job's terminal event.",
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string",
                                                                                      "format": "uuid"}},
                       last_event_id],
        "responses": {**ok, **common, **_errors(("400", "Codes: `invalid_event_id`."),
                                                ("404", "Codes: `job_not_found`."))},
        "security": security,
    }}
    result["paths"]["/api/v1/events/stream"] = {"get": {
        "operationId": "events_stream", "tags": ["jobs"], "summary": "Every job's events, live (SSE)",
        "description": "Every job of the caller, from now (or after Last-Event-ID); with `comments=true`, the "
                       "changes of the comments on its projects too (`event: comment.created`, `.edited`, "
                       "`.resolved`, `.reopened`, `.deleted`; `data` a `CommentEvent` of the event schema).",
        "parameters": [last_event_id, {
            "name": "comments", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            "description": "Also the changes of the comments on the projects' timelines."}],
        "responses": {**ok, **common, **_errors(
            ("400", "Codes: `invalid_event_id`, `validation_error` (the comments parameter not true or false)."),
            ("403", "Codes: `permission_denied` (a team workspace's role that does not see its jobs, or its "
                    "comments when asked for)."),
            ("404", "Codes: `workspace_not_found`."))},
        "security": security,
    }}
    info = result.setdefault("info", {})
    info["description"] = (info.get("description", "") + f" Job events (SSE, WebSocket, webhooks) are described by "
                           f"the JSON Schema at {EVENTS_SCHEMA_URL}; a completed job's `output_data`, per job "
                           f"type, by the one at {OUTPUTS_SCHEMA_URL}.").strip()
    return result
