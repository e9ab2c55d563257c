import createClient, { type Client } from "openapi-fetch";

import { apiError, apiErrorFromResponse, ApiError } from "./errors.js";
import type { JobEvent, StreamItem } from "./events.js";
import type { components, paths } from "./generated/openapi.js";
import type { JobOutputs } from "./generated/outputs.js";
import { backoffDelay, resolveToken, sleep, type ReconnectOptions, type TokenSource } from "./retry.js";
import { EventStream, type FetchLike } from "./sse.js";
import { JobEventsSocket, type WebSocketFactory } from "./websocket.js";

export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type JobAccepted = Schemas["JobAccepted"];
export type JobStatus = Schemas["JobStatusEnum"];
export type JobType = Schemas["JobTypeEnum"];
export type Charge = Schemas["Charge"];
export type Project = Schemas["ProjectOutput"];
export type ProjectInput = Schemas["ProjectInputRequest"];
export type MediaFile = Schemas["MediaFileDetail"];
export type ApiKey = Schemas["KeyOutput"];
/** A new key: `key` (`auteur_sk_...`) is in this answer only. */
export type ApiKeyCreated = Schemas["KeyCreated"];
export type ApiKeyInput = Schemas["KeyListInputRequest"];
export type SpendCap = Schemas["CapOutput"];
export type Usage = Schemas["Usage"];
export type UsageQuery = NonNullable<paths["/api/v1/usage"]["get"]["parameters"]["query"]>;
export type Batch = Schemas["Batch"];
export type BatchAccepted = Schemas["BatchAccepted"];
export type BatchInput = Schemas["BatchInputRequest"];
export type BatchQuote = Schemas["BatchQuote"];
export type BulkFilter = Schemas["BulkFilterRequest"];
export type BulkCancel = Schemas["BulkCancel"];
export type BulkRetryFilter = Schemas["BulkRetryFilterRequest"];
export type BulkRetry = Schemas["BulkRetry"];
/** One line of a batch's manifest (`GET /batches/{id}/manifest`). */
export interface ManifestLine {
  index: number;
  job_id: string;
  type: JobType;
  status: JobStatus;
  credits_cost: number;
  credits_refund: number;
  error_code: string;
  error_message: string;
  retryable: boolean;
  completed_at: string | null;
  output_data: Record<string, unknown>;
}
/** The body a job type's submission takes (`POST /api/v1/jobs/{type}`). */
export type JobInput<T extends JobType> = NonNullable<
  paths[`/api/v1/jobs/${T}`]["post"]["requestBody"]
>["content"]["application/json"];

/** A completed job's `output_data` for job type `T` (the server's output schema, GET /api/schema/outputs/). */
export type JobOutput<T extends JobType> = JobOutputs[T];
// Every job type the API accepts has an output type, and no other: compiling fails otherwise.
type SameKeys<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const everyTypeHasAnOutput: SameKeys<JobType, keyof JobOutputs> = true;
void everyTypeHasAnOutput;

/**
 * `job.output_data`, typed for `type`: null unless the job is of that type and completed.
 *
 *     const output = jobOutput(job, "transcription");
 *     if (output) for (const segment of output.segments) console.log(segment.speaker, segment.text);
 */
export function jobOutput<T extends JobType>(job: Job, type: T): JobOutput<T> | null {
  if (job.type !== type || job.status !== "completed") return null;
  return job.output_data as unknown as JobOutput<T>;
}

/** The raw typed client (openapi-fetch): every path and operation of the OpenAPI document. */
export type ApiClient = Client<paths>;

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>(["completed", "failed", "canceled", "aborted"]);

export interface AuteurClientOptions {
  /** The API's origin, e.g. `https://api.example.com` (no `/api/v1`). */
  baseUrl: string;
  /** A bearer token, or a function returning a current one (asked before each request). */
  token: TokenSource;
  /**
   * The team workspace every request acts in (its id, sent as the `Auteur-Workspace` header):
   * its projects, media, jobs and credits, and the event streams (`events()`, `jobEvents()`,
   * `socket()`). Default: the caller's personal workspace.
   */
  workspace?: string;
  fetch?: FetchLike;
  /** How to open a WebSocket (default: the global one). */
  webSocket?: WebSocketFactory;
}

/** openapi-fetch with the bearer token on every request. */
export function createApiClient(options: AuteurClientOptions): ApiClient {
  const custom = options.fetch;
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    ...(custom ? { fetch: (request: Request) => custom(request) } : {}),
  });
  client.use({
    async onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${await resolveToken(options.token)}`);
      if (options.workspace !== undefined) request.headers.set("Auteur-Workspace", options.workspace);
      return request;
    },
  });
  return client;
}

type Outcome<T> = { data?: T; error?: unknown; response: Response };

/** An openapi-fetch result's data, or its typed `ApiError` (InsufficientCreditsError, NotFoundError...). */
export async function unwrap<T>(pending: Promise<Outcome<T>>): Promise<T> {
  const result = await pending;
  if (result.error !== undefined || !result.response.ok) {
    throw apiError(result.response.status, result.error, result.response.headers);
  }
  return result.data as T;
}

export interface SubmitOptions {
  /** Makes a retry safe: the same key and body return the original job instead of charging again. */
  idempotencyKey?: string;
  /** `Prefer: wait=N`: the server answers once the job ended, if it ends within N s (at most 60). */
  waitSeconds?: number;
  signal?: AbortSignal;
  /** With an `idempotencyKey`: how many more times a submission whose answer was lost (the
   * connection failed, or a 502, 503 or 504 from a proxy) is tried, after a backoff. Each try
   * first looks for the job the key made (`findJobByKey`): a job found is answered as accepted
   * (`recovered: true`), and never submitted again. Default 2; without a key nothing is retried. */
  retries?: number;
}

/** A submission's answer: accepted (the job runs on; `recovered` when its answer was lost and the
 * job the key made was found instead), or, with `waitSeconds`, the job as it ended. */
export type Submitted =
  | { state: "accepted"; accepted: JobAccepted; recovered?: boolean }
  | { state: "ended"; job: Job };

const RETRY_FIRST_DELAY_MS = 250;
const RETRY_MAX_DELAY_MS = 5000;

/** Whether a request failed with its answer lost: a network error (fetch's TypeError, not the
 * caller's abort) or a gateway's 502/503/504. The server may have acted on it. */
function answerLost(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return false;
  if (error instanceof ApiError) return error.status === 502 || error.status === 503 || error.status === 504;
  return error instanceof TypeError;
}

export interface UploadOptions {
  projectId: string;
  data: Uint8Array | Blob;
  filename: string;
  contentType: string;
  /** Wait until the file is probed (`ready`); default true. */
  waitUntilReady?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The server refused the uploaded file after probing it (`rejection_reason` says why). */
export class MediaRejectedError extends Error {
  override readonly name = "MediaRejectedError";
  constructor(readonly media: MediaFile) {
    super(`the file was rejected: ${media.rejection_reason}`);
  }
}

export interface FollowOptions extends ReconnectOptions {
  /** Called with every event, in order. */
  onEvent?: (event: JobEvent) => void;
  /** Called when events were missed (older than the stream's window): GET /jobs/{id}/events has them. */
  onGap?: (after: string | null) => void;
  lastEventId?: string;
  signal?: AbortSignal;
}

export interface SubscribeOptions extends ReconnectOptions {
  lastEventId?: string;
  /** Every-event streams: the changes of the comments on the projects too (items of kind `comment`). */
  comments?: boolean;
  /** Every-event streams: the account's events too, a spend cap's threshold crossed (items of kind
   * `account`; for the roles and keys that see the workspace's credits). */
  account?: boolean;
  /** Every-event streams: the batches' progress and ends too (items of kind `batch`). */
  batches?: boolean;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

function streamQuery(options: SubscribeOptions): string {
  const query = new URLSearchParams();
  if (options.comments) query.set("comments", "true");
  if (options.account) query.set("account", "true");
  if (options.batches) query.set("batches", "true");
  const text = query.toString();
  return text ? `?${text}` : "";
}

/** The API as a client uses it: the typed REST client (`api`) and the multi-step flows on top. */
export class AuteurClient {
  readonly api: ApiClient;
  private readonly baseUrl: string;

  constructor(private readonly options: AuteurClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.api = createApiClient(options);
  }

  /** Checks the token; `user_id` is the account it signs in as. */
  verifyToken(): Promise<Schemas["AuthVerify"]> {
    return unwrap(this.api.POST("/api/v1/auth/verify", { body: {} }));
  }

  createProject(input: ProjectInput): Promise<Project> {
    return unwrap(this.api.POST("/api/v1/projects", { body: input }));
  }

  /** Makes an API key of a workspace (owners, admins); its `key` is shown in this answer only. */
  createApiKey(workspaceId: string, input: ApiKeyInput): Promise<ApiKeyCreated> {
    return unwrap(this.api.POST("/api/v1/workspaces/{workspace_id}/keys", {
      params: { path: { workspace_id: workspaceId } }, body: input,
    }));
  }

  /** A workspace's API keys, newest first (the first page of up to `pageSize`). */
  async listApiKeys(workspaceId: string, pageSize = 100): Promise<ApiKey[]> {
    const page = await unwrap(this.api.GET("/api/v1/workspaces/{workspace_id}/keys", {
      params: { path: { workspace_id: workspaceId }, query: { page_size: pageSize } },
    }));
    return page.keys;
  }

  /** Revokes a key: its next request is refused, its streams close. */
  revokeApiKey(workspaceId: string, keyId: string): Promise<ApiKey> {
    return unwrap(this.api.DELETE("/api/v1/workspaces/{workspace_id}/keys/{key_id}", {
      params: { path: { workspace_id: workspaceId, key_id: keyId } },
    }));
  }

  /** The workspace's spend caps this month: its own, then each key's. */
  async listSpendCaps(workspaceId: string): Promise<SpendCap[]> {
    const page = await unwrap(this.api.GET("/api/v1/workspaces/{workspace_id}/caps", {
      params: { path: { workspace_id: workspaceId } },
    }));
    return page.caps;
  }

  /** Sets (null: lifts) the workspace's monthly spend cap (owners and the billing role). */
  setWorkspaceSpendCap(workspaceId: string, monthlyLimit: number | null): Promise<SpendCap> {
    return unwrap(this.api.PUT("/api/v1/workspaces/{workspace_id}/caps/workspace", {
      params: { path: { workspace_id: workspaceId } }, body: { monthly_limit: monthlyLimit },
    }));
  }

  /** Sets (null: lifts) an API key's monthly spend cap and the most one of its jobs may cost. */
  setKeySpendCap(workspaceId: string, keyId: string, monthlyLimit: number | null,
                 jobLimit: number | null = null): Promise<SpendCap> {
    return unwrap(this.api.PUT("/api/v1/workspaces/{workspace_id}/caps/keys/{key_id}", {
      params: { path: { workspace_id: workspaceId, key_id: keyId } },
      body: { monthly_limit: monthlyLimit, job_limit: jobLimit },
    }));
  }

  /** What the workspace's jobs cost over a range of days, grouped (JSON; equal to the ledger). */
  async usage(query: Omit<UsageQuery, "format"> = {}): Promise<Usage> {
    // Without `format`, the answer is JSON (the CSV exports are `format=csv` and `format=focus`).
    return (await unwrap(this.api.GET("/api/v1/usage", { params: { query } }))) as Usage;
  }

  getJob(jobId: string): Promise<Job> {
    return unwrap(this.api.GET("/api/v1/jobs/{job_id}", { params: { path: { job_id: jobId } } }));
  }

  /** Cancels a job that has not ended (409 `ConflictError` when it has); it is refunded once. */
  cancelJob(jobId: string): Promise<Job> {
    return unwrap(this.api.POST("/api/v1/jobs/{job_id}/cancel", { params: { path: { job_id: jobId } }, body: {} }));
  }

  /** What a job cost, from the ledger: charged, refunded, net, and the entries behind them. */
  async jobCharge(jobId: string): Promise<Charge> {
    return (await this.getJob(jobId)).charge;
  }

  async getMedia(projectId: string, mediaId: string): Promise<MediaFile> {
    const found = await unwrap(
      this.api.GET("/api/v1/projects/{project_id}/media/{media_id}", {
        params: { path: { project_id: projectId, media_id: mediaId } },
      }),
    );
    return found.media;
  }

  /** The job a submission with this `Idempotency-Key` made, or null (none did, or the key's window
   * passed): a client that died after sending finds its job without submitting it again. */
  async findJobByKey(idempotencyKey: string, options: { signal?: AbortSignal } = {}): Promise<Job | null> {
    const signal = options.signal ? { signal: options.signal } : {};
    const found = await unwrap(
      this.api.GET("/api/v1/jobs", { params: { query: { idempotency_key: idempotencyKey } }, ...signal }),
    );
    const first = found.jobs[0];
    if (first === undefined) return null;
    return unwrap(this.api.GET("/api/v1/jobs/{job_id}", { params: { path: { job_id: first.id } }, ...signal }));
  }

  /** Submits a job of `type`, typed by its input; with an `idempotencyKey`, an answer lost on the
   * way is recovered (`SubmitOptions.retries`). */
  async submitJob<T extends JobType>(type: T, input: JobInput<T>, options: SubmitOptions = {}): Promise<Submitted> {
    const key = options.idempotencyKey;
    const retries = key === undefined ? 0 : Math.max(0, options.retries ?? 2);
    for (let attempt = 0; ; attempt += 1) {
      try {
        if (attempt > 0 && key !== undefined) {
          await sleep(backoffDelay(attempt, RETRY_FIRST_DELAY_MS, RETRY_MAX_DELAY_MS), options.signal);
          const job = await this.findJobByKey(key, options.signal ? { signal: options.signal } : {});
          if (job !== null) {
            // The job its own key made: never another's work it was answered with.
            const accepted = {
              job_id: job.id, status: job.status, credits_cost: job.credits_cost, cache: job.cache, deduplicated: false,
            };
            return { state: "accepted", accepted, recovered: true };
          }
        }
        return await this.submitOnce(type, input, options);
      } catch (error) {
        if (attempt >= retries || !answerLost(error, options.signal)) throw error;
      }
    }
  }

  private async submitOnce<T extends JobType>(type: T, input: JobInput<T>, options: SubmitOptions): Promise<Submitted> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;
    if (options.waitSeconds !== undefined) headers["Prefer"] = `wait=${Math.max(0, Math.floor(options.waitSeconds))}`;
    // One request per type's path: built here rather than through openapi-fetch, whose methods
    // take a literal path (the input's type above is the per-path one all the same).
    const response = await this.fetch(`/api/v1/jobs/${encodeURIComponent(type)}`, {
      method: "POST",
      headers,
      body: JSON.stringify(input),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (!response.ok) throw await apiErrorFromResponse(response);
    // 201 answers `Prefer: wait` with the job as it ended; 200/202 is the acceptance.
    if (response.status === 201) return { state: "ended", job: (await response.json()) as Job };
    return { state: "accepted", accepted: (await response.json()) as JobAccepted };
  }

  /** Submits up to 5,000 jobs at once, charged together or not at all (202; 200 for a replay of
   * the same Idempotency-Key and body). */
  submitBatch(input: BatchInput, options: { idempotencyKey?: string } = {}): Promise<BatchAccepted> {
    const headers = options.idempotencyKey !== undefined ? { "Idempotency-Key": options.idempotencyKey } : undefined;
    return unwrap(this.api.POST("/api/v1/jobs/batch", { body: input, ...(headers ? { headers } : {}) }));
  }

  /** What a batch would cost now: each item's price, their sum, and the 402 it would meet, if any. */
  quoteBatch(input: BatchInput): Promise<BatchQuote> {
    return unwrap(this.api.POST("/api/v1/jobs/batch/quote", { body: input }));
  }

  /** A batch: its items counted by status, and whether all have ended (`done`). */
  getBatch(batchId: string): Promise<Batch> {
    return unwrap(this.api.GET("/api/v1/batches/{batch_id}", { params: { path: { batch_id: batchId } } }));
  }

  /** A batch's manifest: one line per item, in the items' order (read in parts of `limit`). */
  async batchManifest(batchId: string, limit = 1000): Promise<ManifestLine[]> {
    const lines: ManifestLine[] = [];
    for (;;) {
      const after = lines.length ? lines[lines.length - 1]!.index : -1;
      const response = await this.fetch(
        `/api/v1/batches/${encodeURIComponent(batchId)}/manifest?after=${after}&limit=${limit}`, { method: "GET" });
      if (!response.ok) throw await apiErrorFromResponse(response);
      const part = (await response.text()).split("\n").filter((line) => line).map((line) => JSON.parse(line));
      lines.push(...(part as ManifestLine[]));
      if (part.length < limit) return lines;
    }
  }

  /** Cancels your unfinished jobs by filter (at least one criterion), each refunded as its own cancel. */
  bulkCancel(filter: BulkFilter): Promise<BulkCancel> {
    return unwrap(this.api.POST("/api/v1/jobs/bulk/cancel", { body: filter }));
  }

  /** Submits again, as one new batch, the failed (retryable) and aborted jobs a filter takes. */
  bulkRetry(filter: BulkRetryFilter): Promise<BulkRetry> {
    return unwrap(this.api.POST("/api/v1/jobs/bulk/retry", { body: filter }));
  }

  /** Submits a job and follows it to its end; resolves with the job as it ended (any status). */
  async runJob<T extends JobType>(
    type: T,
    input: JobInput<T>,
    options: SubmitOptions & Omit<FollowOptions, "lastEventId" | "signal"> = {},
  ): Promise<Job> {
    const submitted = await this.submitJob(type, input, options);
    if (submitted.state === "ended") return submitted.job;
    return this.followJob(submitted.accepted.job_id, options);
  }

  /** Follows a job's events (SSE, resuming across dropped connections) until it ends, then
   * returns the job as `GET /jobs/{id}` shows it. */
  async followJob(jobId: string, options: FollowOptions = {}): Promise<Job> {
    let lastEventId = options.lastEventId;
    // A stream closed cleanly before the terminal event (a server restarting) is followed again
    // from the last id; the job's own status decides when it ended.
    for (let round = 0; ; round++) {
      const stream = this.jobEvents(jobId, { ...options, ...(lastEventId !== undefined ? { lastEventId } : {}) });
      for await (const item of stream) {
        if (item.kind === "gap") options.onGap?.(item.after);
        else if (item.kind === "event") options.onEvent?.(item.event);
      }
      lastEventId = stream.lastEventId;
      const job = await this.getJob(jobId);
      if (TERMINAL_STATUSES.has(job.status)) return job;
      await sleep(Math.min(1000 * 2 ** round, 10_000), options.signal);
    }
  }

  /** One job's events over SSE (replayed from the start, or after `lastEventId`, then live); ends after its terminal event. */
  jobEvents(jobId: string, options: SubscribeOptions = {}): EventStream {
    return new EventStream({
      ...options,
      url: `${this.baseUrl}/api/v1/jobs/${encodeURIComponent(jobId)}/stream`,
      token: this.options.token,
      ...(this.options.workspace !== undefined ? { workspace: this.options.workspace } : {}),
      endsAfterTerminal: true,
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
    });
  }

  /** Every job's events over SSE, live from now (or after `lastEventId`); runs until closed. */
  events(options: SubscribeOptions = {}): EventStream {
    return new EventStream({
      ...options,
      url: `${this.baseUrl}/api/v1/events/stream${streamQuery(options)}`,
      token: this.options.token,
      ...(this.options.workspace !== undefined ? { workspace: this.options.workspace } : {}),
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
    });
  }

  /** Job events over the WebSocket (only `jobIds`' if given), resuming after `lastEventId`. */
  socket(options: SubscribeOptions & { jobIds?: readonly string[] } = {}): JobEventsSocket {
    const url = new URL("/ws/v1/events", this.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return new JobEventsSocket({
      ...options,
      url: url.toString(),
      token: this.options.token,
      ...(this.options.workspace !== undefined ? { workspace: this.options.workspace } : {}),
      ...(this.options.webSocket ? { webSocket: this.options.webSocket } : {}),
    });
  }

  /** Uploads a file: a signed URL, the PUT straight to storage (in parts for a large file),
   * the confirmation, then, unless told not to, waits until the server has probed it. Resolves
   * with the file `ready`; a file the probe refused is a `MediaRejectedError`. */
  async uploadFile(options: UploadOptions): Promise<MediaFile> {
    const { projectId } = options;
    const size = options.data instanceof Blob ? options.data.size : options.data.byteLength;
    const ticket = await unwrap(
      this.api.POST("/api/v1/projects/{project_id}/media/upload-url", {
        params: { path: { project_id: projectId } },
        body: { filename: options.filename, content_type: options.contentType, size_bytes: size },
      }),
    );
    const blob = options.data instanceof Blob ? options.data : new Blob([options.data as Uint8Array<ArrayBuffer>]);
    if (ticket.multipart) {
      await this.uploadParts(projectId, ticket.media_id, blob, ticket.multipart, options.signal);
    } else if (ticket.upload_url) {
      await this.put(ticket.upload_url, ticket.method, ticket.headers, blob, options.signal);
    } else {
      throw new TypeError("the upload ticket has neither a URL nor parts");
    }
    const confirmed = await unwrap(
      this.api.POST("/api/v1/projects/{project_id}/media/{media_id}/confirm", {
        params: { path: { project_id: projectId, media_id: ticket.media_id } },
        body: {},
      }),
    );
    if (options.waitUntilReady === false) return this.getMedia(projectId, confirmed.media.id);
    return this.waitForMedia(projectId, ticket.media_id, options);
  }

  /** Polls a file until it is `ready` (resolves) or `rejected` (MediaRejectedError). */
  async waitForMedia(
    projectId: string,
    mediaId: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MediaFile> {
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    for (let round = 0; ; round++) {
      const media = await this.getMedia(projectId, mediaId);
      if (media.status === "ready") return media;
      if (media.status === "rejected") throw new MediaRejectedError(media);
      if (Date.now() > deadline) throw new Error(`the file is still ${media.status} after the timeout`);
      // Quick at first (a small file is probed in a second), then every 2 s: bounded load on the API.
      await sleep(Math.min(250 * 2 ** round, 2000), options.signal);
    }
  }

  private async uploadParts(
    projectId: string,
    mediaId: string,
    blob: Blob,
    plan: Schemas["MediaMultipartUpload"],
    signal?: AbortSignal,
  ): Promise<void> {
    const batch = 50;
    for (let first = 1; first <= plan.part_count; first += batch) {
      const numbers = Array.from({ length: Math.min(batch, plan.part_count - first + 1) }, (_, i) => first + i);
      const slices = new Map(numbers.map((n) => [n, blob.slice((n - 1) * plan.part_size, n * plan.part_size)]));
      const parts = await Promise.all(
        numbers.map(async (number) => {
          const digest = await crypto.subtle.digest("SHA-256", await slices.get(number)!.arrayBuffer());
          return { number, sha256: btoa(String.fromCharCode(...new Uint8Array(digest))) };
        }),
      );
      const signed = await unwrap(
        this.api.POST("/api/v1/projects/{project_id}/media/{media_id}/parts", {
          params: { path: { project_id: projectId, media_id: mediaId } },
          body: { parts },
        }),
      );
      for (const part of signed.parts) {
        await this.put(part.url, part.method, part.headers, slices.get(part.number)!, signal);
      }
    }
  }

  private async put(url: string, method: string, headers: Record<string, string>, body: Blob, signal?: AbortSignal): Promise<void> {
    const doFetch = this.options.fetch ?? fetch;
    // Straight to storage: the signed URL is the credential, so no Authorization header goes with it.
    const response = await doFetch(url, { method, headers, body, ...(signal ? { signal } : {}) });
    if (!response.ok) throw await apiErrorFromResponse(response);
    await response.arrayBuffer();
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    const doFetch = this.options.fetch ?? fetch;
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${await resolveToken(this.options.token)}`);
    if (this.options.workspace !== undefined) headers.set("Auteur-Workspace", this.options.workspace);
    return doFetch(`${this.baseUrl}${path}`, { ...init, headers });
  }
}

export { ApiError };
export type { StreamItem };
