import { parseWsMessage, type StreamItem } from "./events.js";
import { backoffDelay, resolveToken, sleep, type ReconnectOptions, type TokenSource } from "./retry.js";

/** What the client needs of a WebSocket: the standard API (Node 22's global, a browser's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close", listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: "error", listener: (event: unknown) => void): void;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

/** The platform's WebSocket (Node 22+, browsers, Deno, Bun). Node 20 has none: pass `webSocket`,
 * e.g. `(url) => new WebSocket(url)` with `WebSocket` from the `ws` package. */
function defaultWebSocket(url: string): WebSocketLike {
  const Platform = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (Platform === undefined) {
    throw new TypeError(
      "This runtime has no global WebSocket (Node 20): pass the client's `webSocket` option, e.g. " +
        "`webSocket: (url) => new WebSocket(url)` with `import { WebSocket } from \"ws\"`.",
    );
  }
  return new Platform(url);
}

/** The server's close codes (see the protocol in the API's documentation). */
export const CloseCode = {
  BadMessage: 4400,
  BadToken: 4401,
  Forbidden: 4403,
  NotFound: 4404,
  AuthTimeout: 4408,
  /** The member's role in the workspace changed: reconnecting gets what the new role sees. */
  SeatChanged: 4409,
  TooManyStreams: 4429,
  TryAgain: 1013,
} as const;

/** The socket was closed for a reason reconnecting cannot fix (a bad token, an unknown job...),
 * or the reconnections gave up. */
export class SocketClosedError extends Error {
  override readonly name = "SocketClosedError";
  constructor(
    readonly code: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`WebSocket closed: ${code}${reason ? ` ${reason}` : ""}`, options);
  }
}

export interface JobSocketOptions extends ReconnectOptions {
  /** `ws(s)://host/ws/v1/events`. */
  url: string;
  token: TokenSource;
  /** The team workspace whose events to read (its id, sent in the auth message); default: the personal one. */
  workspace?: string;
  /** Only these jobs' events (more with `subscribe`); none: every job of the caller. */
  jobIds?: readonly string[];
  /** The changes of the comments on the projects too (items of kind `comment`). */
  comments?: boolean;
  /** The account's events too: a spend cap's threshold crossed, a review hold set or lifted (items of kind `account`). */
  account?: boolean;
  /** The batches' progress and ends too (items of kind `batch`). */
  batches?: boolean;
  /** Resume after this event id. */
  lastEventId?: string;
  /** Reconnect when nothing, the server's pings included, arrives for this long. Default 45000 ms. */
  idleTimeoutMs?: number;
  /** How to open a socket; default Node's (or the browser's) global WebSocket. */
  webSocket?: WebSocketFactory;
  signal?: AbortSignal;
  random?: () => number;
}

// Closes after which the same request would be refused again.
const FATAL = new Set<number>([CloseCode.BadMessage, CloseCode.Forbidden, CloseCode.NotFound, CloseCode.AuthTimeout]);

type Signal =
  | { kind: "item"; item: StreamItem }
  | { kind: "closed"; code: number; reason: string }
  | { kind: "error"; error: unknown };

/** Job events over the WebSocket: authenticates with its first message (the token never appears
 * in a URL or a log), subscribes, and on a dropped connection, a stall, 1013 (fell behind),
 * 4409 (the member's role changed), 4429 (too many streams) or 4401 (token expired: the token
 * source is asked again) reconnects
 * with backoff and resumes after the last event id. Iterate it; `close()` ends the iteration. */
export class JobEventsSocket implements AsyncIterable<StreamItem> {
  private last: string | undefined;
  private readonly jobIds: Set<string>;
  private socket: WebSocketLike | undefined;
  private ready = false;
  private readonly controller = new AbortController();

  constructor(private readonly options: JobSocketOptions) {
    this.last = options.lastEventId;
    this.jobIds = new Set(options.jobIds ?? []);
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  get lastEventId(): string | undefined {
    return this.last;
  }

  /** Adds a job to those followed (at once if connected, and on every reconnection). */
  subscribe(jobId: string): void {
    this.jobIds.add(jobId);
    if (this.ready) this.socket?.send(JSON.stringify({ type: "subscribe", job_id: jobId }));
  }

  close(): void {
    this.controller.abort(new DOMException("closed", "AbortError"));
    this.socket?.close(1000);
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    return this.run();
  }

  private async *run(): AsyncGenerator<StreamItem> {
    const options = this.options;
    const signal = this.controller.signal;
    const maxAttempts = options.maxAttempts ?? 10;
    const baseDelay = options.initialDelayMs ?? 1000;
    const maxDelay = options.maxDelayMs ?? 30_000;
    const idleTimeout = options.idleTimeoutMs ?? 45_000;
    const open = options.webSocket ?? defaultWebSocket;
    let failures = 0;
    let lastClose: SocketClosedError | undefined;
    while (!signal.aborted) {
      if (failures > 0) {
        if (failures >= maxAttempts) {
          throw new SocketClosedError(lastClose?.code ?? 1006, `gave up after ${failures} attempts`, { cause: lastClose });
        }
        try {
          await sleep(backoffDelay(failures, baseDelay, maxDelay, options.random), signal);
        } catch {
          return;
        }
      }
      const token = await resolveToken(options.token);
      if (signal.aborted) return;
      const queue = new SignalQueue();
      const socket = open(options.url);
      this.socket = socket;
      this.ready = false;
      let idle: ReturnType<typeof setTimeout> | undefined;
      const touch = (): void => {
        clearTimeout(idle);
        idle = setTimeout(() => socket.close(4000, "idle"), idleTimeout);
      };
      touch();
      const auth = this.options.workspace === undefined ? { type: "auth", token } : { type: "auth", token, workspace: this.options.workspace };
      socket.addEventListener("open", () => socket.send(JSON.stringify(auth)));
      socket.addEventListener("message", ({ data }) => {
        touch();
        try {
          const message = parseWsMessage(JSON.parse(String(data)));
          switch (message.type) {
            case "ready":
              this.ready = true;
              // Subscriptions first: a resume then replays only the followed jobs' events.
              for (const jobId of this.jobIds) socket.send(JSON.stringify({ type: "subscribe", job_id: jobId }));
              if (this.options.comments) socket.send(JSON.stringify({ type: "subscribe", comments: true }));
              if (this.options.account) socket.send(JSON.stringify({ type: "subscribe", account: true }));
              if (this.options.batches) socket.send(JSON.stringify({ type: "subscribe", batches: true }));
              if (this.last !== undefined) socket.send(JSON.stringify({ type: "resume", after: this.last }));
              break;
            case "job.event":
              queue.push({ kind: "item", item: { kind: "event", event: message.event } });
              break;
            case "comment.event":
              queue.push({ kind: "item", item: { kind: "comment", event: message.event } });
              break;
            case "account.event":
              queue.push({ kind: "item", item: { kind: "account", event: message.event } });
              break;
            case "batch.event":
              queue.push({ kind: "item", item: { kind: "batch", event: message.event } });
              break;
            case "gap":
              queue.push({ kind: "item", item: { kind: "gap", after: message.after } });
              break;
            default:
              break; // subscribed, ping, pong
          }
        } catch (error) {
          queue.push({ kind: "error", error });
          socket.close(1000);
        }
      });
      socket.addEventListener("close", ({ code, reason }) => queue.push({ kind: "closed", code, reason }));
      socket.addEventListener("error", () => undefined); // a close event always follows
      let progressed = false;
      try {
        for (;;) {
          const next = await queue.next(signal);
          if (next === undefined) return; // closed by the caller
          if (next.kind === "error") throw next.error;
          if (next.kind === "item") {
            if (next.item.kind !== "gap") {
              this.last = next.item.event.id;
              progressed = true;
              failures = 0;
            }
            yield next.item;
            continue;
          }
          if (signal.aborted) return;
          const previous = lastClose;
          lastClose = new SocketClosedError(next.code, next.reason);
          if (FATAL.has(next.code)) throw lastClose;
          // A token refused twice in a row, the second one just fetched, will be refused again.
          if (next.code === CloseCode.BadToken && !progressed && previous?.code === CloseCode.BadToken) {
            throw lastClose;
          }
          failures = progressed ? 1 : failures + 1;
          break;
        }
      } finally {
        clearTimeout(idle);
        this.ready = false;
        if (socket.readyState <= 1) socket.close(1000);
      }
    }
  }
}

/** Events from the socket's callbacks, handed to the iterator one at a time. */
class SignalQueue {
  private readonly items: Signal[] = [];
  private waiting: ((signal: Signal | undefined) => void) | undefined;

  push(signal: Signal): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve(signal);
    } else {
      this.items.push(signal);
    }
  }

  next(abort: AbortSignal): Promise<Signal | undefined> {
    const item = this.items.shift();
    if (item) return Promise.resolve(item);
    if (abort.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiting = resolve;
      abort.addEventListener("abort", () => {
        if (this.waiting === resolve) {
          this.waiting = undefined;
          resolve(undefined);
        }
      }, { once: true });
    });
  }
}
