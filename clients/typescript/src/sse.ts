import { apiError, apiErrorFromResponse, ApiError, isErrorBody } from "./errors.js";
import {
  isTerminalEvent,
  parseAccountEvent,
  parseBatchEvent,
  parseCommentEvent,
  parseJobEvent,
  type StreamItem,
  type StreamGap,
} from "./events.js";
import { backoffDelay, resolveToken, sleep, type ReconnectOptions, type TokenSource } from "./retry.js";

/** One dispatched Server-Sent Event. */
export interface SseMessage {
  /** The `event:` field, "message" when there was none. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last event id seen so far on the stream (an event without `id:` keeps the previous one). */
  lastEventId: string;
}

/** The WHATWG event-stream parser, incremental: feed it decoded text in chunks of any size (a line
 * or a CRLF may be split across chunks) and it returns the events each chunk completes. */
export class SseParser {
  /** The last `retry:` the server sent, in ms. */
  retry: number | undefined;
  lastEventId = "";
  private buffer = "";
  private data: string[] = [];
  private eventType = "";
  private started = false;
  private pendingCR = false;

  constructor(private readonly onComment?: (comment: string) => void) {}

  feed(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    // A CR that ended the previous chunk already ended its line: a LF opening this one is its pair.
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    const out: SseMessage[] = [];
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      const message = this.line(line);
      if (message) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The stream ended: an event not closed by a blank line is discarded, as the standard says. */
  end(): void {
    this.buffer = "";
    this.data = [];
    this.eventType = "";
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) {
      this.onComment?.(line.slice(1).replace(/^ /, ""));
      return undefined;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
    return undefined;
  }

  private dispatch(): SseMessage | undefined {
    const data = this.data;
    const event = this.eventType || "message";
    this.data = [];
    this.eventType = "";
    if (data.length === 0) return undefined;
    return { event, data: data.join("\n"), lastEventId: this.lastEventId };
  }
}

/** Every message of a byte stream, decoded as UTF-8 and parsed. An abort of `signal` cancels the
 * read in progress and throws its reason (whatever fetch supplied the body). */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  parser: SseParser = new SseParser(),
  signal?: AbortSignal,
): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  const onAbort = (): void => void reader.cancel(signal?.reason).catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (signal?.aborted) throw signal.reason;
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
    parser.end();
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface EventStreamOptions extends ReconnectOptions {
  /** The stream's full URL: `${baseUrl}/api/v1/events/stream` or `${baseUrl}/api/v1/jobs/{id}/stream`. */
  url: string;
  token: TokenSource;
  /** The team workspace whose events to read (its id, sent as `Auteur-Workspace`); default: the personal one. */
  workspace?: string;
  /** Resume after this event id (from an earlier subscription or the REST API). */
  lastEventId?: string;
  /** The stream ends by itself after the job's terminal event: a job's stream. */
  endsAfterTerminal?: boolean;
  /** Reconnect when nothing, heartbeats included, arrives for this long. Default 45000 ms. */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  fetch?: FetchLike;
  /** The source of the jitter (tests make it deterministic). */
  random?: () => number;
}

/** Thrown when a subscription gives up: the last failure is its `cause`. */
export class StreamClosedError extends Error {
  override readonly name = "StreamClosedError";
}

/** Job events over Server-Sent Events, read with fetch (so the token goes in the Authorization
 * header, which EventSource cannot send). It reconnects on a dropped connection, a stall, an
 * overloaded server (429/5xx) and the server's `error` event (a token that expired: the token
 * source is asked again), and resumes after the last event id, so no event is missed or repeated.
 * A refusal (400, 401 after a fresh token, 403, 404) ends it with the typed `ApiError`. */
export class EventStream implements AsyncIterable<StreamItem> {
  private last: string | undefined;
  private readonly controller = new AbortController();

  constructor(private readonly options: EventStreamOptions) {
    this.last = options.lastEventId;
    options.signal?.addEventListener("abort", () => this.controller.abort(options.signal?.reason), { once: true });
  }

  /** The id to resume after: the last event's delivered so far. */
  get lastEventId(): string | undefined {
    return this.last;
  }

  close(): void {
    this.controller.abort(new DOMException("closed", "AbortError"));
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    return this.run();
  }

  private async *run(): AsyncGenerator<StreamItem> {
    const options = this.options;
    const doFetch = options.fetch ?? fetch;
    const maxAttempts = options.maxAttempts ?? 10;
    const maxDelay = options.maxDelayMs ?? 30_000;
    const idleTimeout = options.idleTimeoutMs ?? 45_000;
    let baseDelay = options.initialDelayMs ?? 1000;
    let failures = 0;
    let lastFailure: unknown;
    const signal = this.controller.signal;
    try {
      while (!signal.aborted) {
        if (failures > 0) {
          if (failures >= maxAttempts) {
            throw new StreamClosedError(`gave up after ${failures} failed attempts`, { cause: lastFailure });
          }
          await sleep(backoffDelay(failures, baseDelay, maxDelay, options.random), signal);
        }
        const attempt = new AbortController();
        const onAbort = (): void => attempt.abort(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        let idle: ReturnType<typeof setTimeout> | undefined;
        const touch = (): void => {
          clearTimeout(idle);
          idle = setTimeout(() => attempt.abort(new Error(`no data for ${idleTimeout} ms`)), idleTimeout);
        };
        let progressed = false;
        try {
          const headers: Record<string, string> = {
            Accept: "text/event-stream",
            Authorization: `Bearer ${await resolveToken(options.token)}`,
          };
          if (this.last !== undefined) headers["Last-Event-ID"] = this.last;
          if (options.workspace !== undefined) headers["Auteur-Workspace"] = options.workspace;
          touch();
          const response = await doFetch(options.url, { headers, signal: attempt.signal });
          if (!response.ok) {
            const error = await apiErrorFromResponse(response);
            // Overload and unavailability pass; any other refusal will not change by retrying.
            if (response.status !== 429 && response.status < 500) throw new FatalStreamError(error);
            lastFailure = error;
            failures++;
            continue;
          }
          if (!response.body) throw new FatalStreamError(new TypeError("the stream answered without a body"));
          const parser = new SseParser(touch);
          let ended = false;
          let streamError: ApiError | undefined;
          for await (const message of readSse(response.body, parser, attempt.signal)) {
            touch();
            if (parser.retry !== undefined) baseDelay = parser.retry;
            if (message.event === "gap") {
              const gap = JSON.parse(message.data) as StreamGap;
              yield { kind: "gap", after: gap.after };
              continue;
            }
            if (message.event === "error") {
              const body: unknown = JSON.parse(message.data);
              streamError = apiError(isErrorBody(body) && body.error.code === "invalid_token" ? 401 : 503, body);
              continue;
            }
            if (message.event.startsWith("spend_cap.") || message.event.startsWith("account.")) {
              const account = parseAccountEvent(JSON.parse(message.data));
              this.last = account.id;
              progressed = true;
              failures = 0;
              yield { kind: "account", event: account };
              continue;
            }
            if (message.event.startsWith("batch.")) {
              const batch = parseBatchEvent(JSON.parse(message.data));
              this.last = batch.id;
              progressed = true;
              failures = 0;
              yield { kind: "batch", event: batch };
              continue;
            }
            if (message.event.startsWith("comment.")) {
              const comment = parseCommentEvent(JSON.parse(message.data));
              this.last = comment.id;
              progressed = true;
              failures = 0;
              yield { kind: "comment", event: comment };
              continue;
            }
            const event = parseJobEvent(JSON.parse(message.data));
            this.last = event.id;
            progressed = true;
            failures = 0;
            yield { kind: "event", event };
            if (options.endsAfterTerminal && isTerminalEvent(event)) ended = true;
          }
          if (ended) return;
          if (streamError) {
            lastFailure = streamError;
            failures++;
            continue;
          }
          // A job's stream that closes cleanly without an error has nothing more to send (the
          // server ends it after the terminal event, which may have come before the resumed id).
          if (options.endsAfterTerminal) return;
          // Every-event streams never end on their own: a clean close is a server going away.
          failures = progressed ? 1 : failures + 1;
          lastFailure = new Error("the stream closed");
        } catch (error) {
          if (error instanceof FatalStreamError) throw error.error;
          if (signal.aborted) return;
          lastFailure = error;
          failures = progressed ? 1 : failures + 1;
        } finally {
          clearTimeout(idle);
          signal.removeEventListener("abort", onAbort);
          attempt.abort();
        }
      }
    } catch (error) {
      if (signal.aborted && !(error instanceof ApiError) && !(error instanceof StreamClosedError)) return;
      throw error;
    }
  }
}

class FatalStreamError {
  constructor(readonly error: Error) {}
}
