import type { components as events } from "./generated/events.js";
import type { components } from "./generated/openapi.js";

type EventSchemas = events["schemas"];

/** One job event as the streams deliver it; narrowing on `type` narrows `data`. */
export type JobEvent = EventSchemas["JobEvent"];
export type JobEventType = EventSchemas["JobEventType"];
/** The `data` of an event of type `T`. */
export type JobEventData<T extends JobEventType> = Extract<JobEvent, { type: T }>["data"];
/** A change of a comment on a project's timeline (`type`: comment.created, .edited, .resolved,
 * .reopened or .deleted), sent to the streams that ask for comments. */
export type CommentEvent = EventSchemas["CommentEvent"];
/** A threshold (50, 80, 100 %) of one of the workspace's spend caps crossed, once a month each, sent to
 * the streams that ask for the account's events. */
export type SpendCapEvent = EventSchemas["SpendCapEvent"];
/** The account's generative requests held for staff review after repeated content policy refusals
 * (`state: "held"`, with its `reason`), or the hold lifted by staff, sent to the streams that ask for
 * the account's events. */
export type ReviewHoldEvent = EventSchemas["ReviewHoldEvent"];
/** An account's event: tell them apart by `type` (`spend_cap.threshold`, `account.review_hold`). */
export type AccountEvent = SpendCapEvent | ReviewHoldEvent;
/** A batch's progress as its items end, and its end (`batch.completed`, once), sent to the streams
 * that ask for batches. */
export type BatchEvent = EventSchemas["BatchEvent"];
/** Events after `after` are no longer in the stream's window (GET /jobs/{id}/events has them). */
export type StreamGap = EventSchemas["StreamGap"];
/** Every message the WebSocket server sends. */
export type WsServerMessage = EventSchemas["WsServerMessage"];
/** A webhook delivery's body as the event schema describes it. */
export type WebhookPayloadEnvelope = EventSchemas["WebhookPayload"];
/** A webhook delivery's body, `data` typed as the job it carries (`GET /jobs/{id}`'s `Job`). A
 * `webhook.test` delivery (POST /webhooks/{id}/test) carries no job: narrow on `type` first. */
export type WebhookPayload =
  | (Omit<WebhookPayloadEnvelope, "type" | "data"> & {
      type: Exclude<WebhookPayloadEnvelope["type"], "webhook.test">;
      data: components["schemas"]["Job"];
    })
  | (Omit<WebhookPayloadEnvelope, "type"> & { type: "webhook.test" });

/** The event types after which a job changes no more. */
export const TERMINAL_EVENT_TYPES: ReadonlySet<JobEventType> = new Set<JobEventType>([
  "completed",
  "failed",
  "canceled",
  "aborted",
]);

export function isTerminalEvent(event: JobEvent): boolean {
  return TERMINAL_EVENT_TYPES.has(event.type);
}

/** What a subscription yields: a job's event, a comment's change (only when asked for: `comments`),
 * an account's event (only when asked for: `account`), a batch's (only when asked for: `batches`),
 * or word that some were missed (read them over REST). */
export type StreamItem =
  | { kind: "event"; event: JobEvent }
  | { kind: "comment"; event: CommentEvent }
  | { kind: "account"; event: AccountEvent }
  | { kind: "batch"; event: BatchEvent }
  | { kind: "gap"; after: string | null };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks the fields every event has before it is handed on typed: what arrives over the network
 * is input. `data`'s shape per type is the server's contract (the schema the types come from). */
export function parseJobEvent(value: unknown): JobEvent {
  if (
    !isObject(value) ||
    typeof value["id"] !== "string" ||
    typeof value["job_id"] !== "string" ||
    typeof value["type"] !== "string" ||
    typeof value["status"] !== "string" ||
    !isObject(value["data"])
  ) {
    throw new TypeError(`not a job event: ${JSON.stringify(value)}`);
  }
  return value as unknown as JobEvent;
}

/** Checks the fields every comment event has before it is handed on typed. */
export function parseCommentEvent(value: unknown): CommentEvent {
  if (
    !isObject(value) ||
    typeof value["id"] !== "string" ||
    typeof value["type"] !== "string" ||
    !value["type"].startsWith("comment.") ||
    typeof value["project_id"] !== "string" ||
    !isObject(value["comment"])
  ) {
    throw new TypeError(`not a comment event: ${JSON.stringify(value)}`);
  }
  return value as unknown as CommentEvent;
}

/** Checks the fields every account event of its type has before it is handed on typed. */
export function parseAccountEvent(value: unknown): AccountEvent {
  if (isObject(value) && typeof value["id"] === "string") {
    if (
      value["type"] === "spend_cap.threshold" &&
      typeof value["alert_id"] === "number" &&
      typeof value["threshold"] === "number"
    ) {
      return value as unknown as SpendCapEvent;
    }
    if (value["type"] === "account.review_hold" && typeof value["state"] === "string" && typeof value["reason"] === "string") {
      return value as unknown as ReviewHoldEvent;
    }
  }
  throw new TypeError(`not an account event: ${JSON.stringify(value)}`);
}

/** Checks the fields every batch event has before it is handed on typed. */
export function parseBatchEvent(value: unknown): BatchEvent {
  if (
    !isObject(value) ||
    typeof value["id"] !== "string" ||
    typeof value["type"] !== "string" ||
    !value["type"].startsWith("batch.") ||
    typeof value["batch_id"] !== "string" ||
    !isObject(value["counts"])
  ) {
    throw new TypeError(`not a batch event: ${JSON.stringify(value)}`);
  }
  return value as unknown as BatchEvent;
}

/** Checks a WebSocket message's `type` (and a `job.event`'s, `comment.event`'s, `account.event`'s or
 * `batch.event`'s event) before it is handed on typed. */
export function parseWsMessage(value: unknown): WsServerMessage {
  if (!isObject(value) || typeof value["type"] !== "string") {
    throw new TypeError(`not a WebSocket message: ${JSON.stringify(value)}`);
  }
  if (value["type"] === "job.event") parseJobEvent(value["event"]);
  if (value["type"] === "comment.event") parseCommentEvent(value["event"]);
  if (value["type"] === "account.event") parseAccountEvent(value["event"]);
  if (value["type"] === "batch.event") parseBatchEvent(value["event"]);
  return value as unknown as WsServerMessage;
}
