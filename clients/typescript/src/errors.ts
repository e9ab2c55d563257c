import type { components } from "./generated/openapi.js";

/** Every error answer's body: `{"error": {"code", "message", "details"}}`. */
export type ErrorBody = components["schemas"]["Error"];
export type ErrorDetail = components["schemas"]["ErrorDetail"];

/** An error answer from the API. Branch on `code` (machine-readable), show `message`; `details`
 * holds field paths, limits and amounts. Subclasses exist for the statuses a client handles
 * differently (402, 404, 429...), so `instanceof` narrows without comparing numbers. */
export class ApiError extends Error {
  override readonly name: string = "ApiError";
  readonly status: number;
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;
  /** The envelope as received; undefined when the body was not one (a proxy's page, say). */
  readonly body: ErrorBody | undefined;
  readonly requestId: string | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(body?.error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error.code ?? `http_${status}`;
    this.details = body?.error.details ?? {};
    this.body = body;
    this.requestId = headers?.get("X-Request-ID") ?? null;
  }
}

/** 401: no token, or one that is malformed, expired or revoked (`not_authenticated`, `invalid_token`). */
export class AuthenticationError extends ApiError {
  override readonly name = "AuthenticationError";
}

/** 402: the balance does not cover the cost (`insufficient_credits`; details name the amounts). */
export class InsufficientCreditsError extends ApiError {
  override readonly name = "InsufficientCreditsError";
}

/** 403: not allowed for this caller (a plan required, a quota exceeded...). */
export class ForbiddenError extends ApiError {
  override readonly name: string = "ForbiddenError";
}

/** 403 `consent_required`: a voice without its speaker's verified consent (making one, or speaking
 * or lip-syncing in one), or a face that no usable likeness consent of the workspace covers (lip sync,
 * performance cloning, gaze redirection). `reason`: `missing`, `failed`, `other_sample`, `used`,
 * `revoked` or `policy` (only attested consents cover the face, and the workspace's policy is
 * `verified`); `voiceId` names the voice refused, when one was, `mediaId` the file whose face was;
 * `field` the request's field. */
export class ConsentRequiredError extends ForbiddenError {
  override readonly name = "ConsentRequiredError";
  readonly field: string | null;
  readonly voiceId: string | null;
  readonly mediaId: string | null;
  readonly reason: string | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(status, body, headers);
    const text = (key: string) => (typeof this.details[key] === "string" ? (this.details[key] as string) : null);
    this.field = text("field");
    this.voiceId = text("voice_id");
    this.mediaId = text("media_id");
    this.reason = text("reason");
  }
}

/** 403 `account_under_review`: the account is held for staff review after repeated refusals by the
 * content policy, so its generative requests (submissions, quotes, batches, retries of the generative
 * job types) are refused until staff lift the hold; nothing was made or charged. Transcription,
 * renders and compression still run. `heldSince`: since when (ISO 8601); `reason`: `refusals`,
 * `zero_tolerance` or `outputs`. */
export class AccountUnderReviewError extends ForbiddenError {
  override readonly name = "AccountUnderReviewError";
  readonly heldSince: string | null;
  readonly reason: string | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(status, body, headers);
    const text = (key: string) => (typeof this.details[key] === "string" ? (this.details[key] as string) : null);
    this.heldSince = text("held_since");
    this.reason = text("reason");
  }
}

/** 404: no such object, or another user's: the API does not tell them apart. */
export class NotFoundError extends ApiError {
  override readonly name = "NotFoundError";
}

/** 409: the object's state forbids it now (a job already ended, an EDL saved by someone else...). */
export class ConflictError extends ApiError {
  override readonly name = "ConflictError";
}

/** 400 and 422: the request is malformed or cannot be done; `details.fields` names the fields. */
export class ValidationError extends ApiError {
  override readonly name: string = "ValidationError";
}

/** A field the content policy refused, with every category it was refused in. */
export interface FlaggedField {
  field: string;
  categories: string[];
}

/** 422 `content_policy_violation`: a text the request asks a model to act on, a render's captions
 * to burn in (`captions`), or the pictures of an input file a generative model works from (e.g.
 * `video_media_id` of a lip sync) was refused by the content policy; nothing was made or charged.
 * `flagged` names every refused field (in a batch, `items[<index>].<field>`) with its categories;
 * the text itself is never echoed. (A file that could not be decoded to be screened is a plain
 * ValidationError, code `media_unscreenable`.) */
export class ContentPolicyError extends ValidationError {
  override readonly name = "ContentPolicyError";
  readonly flagged: FlaggedField[];
  readonly policyVersion: string | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(status, body, headers);
    this.flagged = flaggedFields(this.details["flagged"]);
    const version = this.details["policy_version"];
    this.policyVersion = typeof version === "string" ? version : null;
  }
}

function flaggedFields(value: unknown): FlaggedField[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((entry: unknown) => {
    if (typeof entry !== "object" || entry === null) return [];
    const { field, categories } = entry as { field?: unknown; categories?: unknown };
    if (typeof field !== "string" || !Array.isArray(categories)) return [];
    return [{ field, categories: categories.filter((c): c is string => typeof c === "string") }];
  });
}

/** 429: too many requests (or streams) for now. */
export class RateLimitedError extends ApiError {
  override readonly name = "RateLimitedError";
  /** When to try again: the `Retry-After` header, else `details.retry_after_seconds`; null if neither. */
  readonly retryAfterSeconds: number | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(status, body, headers);
    this.retryAfterSeconds = retryAfterSeconds(headers, this.details);
  }
}

/** 5xx: the server could not do it now; retrying later may work. */
export class ServerError extends ApiError {
  override readonly name = "ServerError";
  readonly retryAfterSeconds: number | null;

  constructor(status: number, body: ErrorBody | undefined, headers?: Headers) {
    super(status, body, headers);
    this.retryAfterSeconds = retryAfterSeconds(headers, this.details);
  }
}

function retryAfterSeconds(headers: Headers | undefined, details: Readonly<Record<string, unknown>>): number | null {
  const header = headers?.get("Retry-After");
  if (header && /^\d+$/.test(header.trim())) return Number(header.trim());
  const detail = details["retry_after_seconds"];
  return typeof detail === "number" && Number.isFinite(detail) ? detail : null;
}

/** True when `value` has the envelope's shape (checked, not assumed: it crossed the network). */
export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== "object" || value === null) return false;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return typeof code === "string" && typeof message === "string";
}

/** The typed error for an answer's status and body. */
export function apiError(status: number, body: unknown, headers?: Headers): ApiError {
  const envelope = isErrorBody(body) ? { error: { ...body.error, details: body.error.details ?? {} } } : undefined;
  if (status === 401) return new AuthenticationError(status, envelope, headers);
  if (status === 402) return new InsufficientCreditsError(status, envelope, headers);
  if (status === 403 && envelope?.error.code === "consent_required") {
    return new ConsentRequiredError(status, envelope, headers);
  }
  if (status === 403 && envelope?.error.code === "account_under_review") {
    return new AccountUnderReviewError(status, envelope, headers);
  }
  if (status === 403) return new ForbiddenError(status, envelope, headers);
  if (status === 404) return new NotFoundError(status, envelope, headers);
  if (status === 409) return new ConflictError(status, envelope, headers);
  if (status === 422 && envelope?.error.code === "content_policy_violation") {
    return new ContentPolicyError(status, envelope, headers);
  }
  if (status === 400 || status === 422) return new ValidationError(status, envelope, headers);
  if (status === 429) return new RateLimitedError(status, envelope, headers);
  if (status >= 500) return new ServerError(status, envelope, headers);
  return new ApiError(status, envelope, headers);
}

/** The typed error for a non-2xx `Response`, its body read (JSON when it is JSON). */
export async function apiErrorFromResponse(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    const text = await response.text();
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return apiError(response.status, body, response.headers);
}
