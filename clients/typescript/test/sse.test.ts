// The SSE parser and the subscription's reconnect-and-resume logic, without a server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { AuthenticationError, EventStream, NotFoundError, SseParser, StreamClosedError, type JobEvent, type SseMessage } from "../src/index.js";

function parseAll(chunks: string[]): { messages: SseMessage[]; comments: string[]; parser: SseParser } {
  const comments: string[] = [];
  const parser = new SseParser((c) => comments.push(c));
  const messages = chunks.flatMap((chunk) => parser.feed(chunk));
  return { messages, comments, parser };
}

describe("SseParser", () => {
  test("reads id, event, data and retry, and keeps comments aside", () => {
    const { messages, comments, parser } = parseAll([": heartbeat\n\nretry: 2000\n\nid: 1-0\nevent: started\ndata: {\"a\":1}\n\n"]);
    assert.deepEqual(messages, [{ event: "started", data: '{"a":1}', lastEventId: "1-0" }]);
    assert.deepEqual(comments, ["heartbeat"]);
    assert.equal(parser.retry, 2000);
  });

  test("joins multi-line data with newlines, and defaults the type to message", () => {
    const { messages } = parseAll(["data: one\ndata:two\ndata\ndata:  three\n\n"]);
    assert.deepEqual(messages, [{ event: "message", data: "one\ntwo\n\n three", lastEventId: "" }]);
  });

  test("handles any split of the input, CRLF and lone CR line ends alike", () => {
    const text = "id: 5-1\r\nevent: progress\r\ndata: {\"progress\": 50}\r\n\r\nid: 5-2\revent: completed\rdata: x\r\rdata: y\n\n";
    const whole = parseAll([text]).messages;
    assert.equal(whole.length, 3);
    for (let size = 1; size <= 7; size++) {
      const chunks = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      assert.deepEqual(parseAll(chunks).messages, whole, `chunks of ${size}`);
    }
    assert.deepEqual(whole.map((m) => [m.event, m.lastEventId, m.data]), [
      ["progress", "5-1", '{"progress": 50}'],
      ["completed", "5-2", "x"],
      ["message", "5-2", "y"],
    ]);
  });

  test("an id without data updates the last id without dispatching; a retry that is not a number is ignored", () => {
    const { messages, parser } = parseAll(["id: 7-0\n\nretry: soon\n\ndata: after\n\n"]);
    assert.deepEqual(messages, [{ event: "message", data: "after", lastEventId: "7-0" }]);
    assert.equal(parser.retry, undefined);
  });

  test("ignores a leading BOM and unknown fields; an id containing NUL is ignored", () => {
    const { messages } = parseAll(["\uFEFFdata: a\nfoo: bar\nid: x\0y\n\n"]);
    assert.deepEqual(messages, [{ event: "message", data: "a", lastEventId: "" }]);
  });

  test("an event not ended by a blank line is not dispatched", () => {
    const { messages } = parseAll(["data: complete\n\ndata: cut off"]);
    assert.deepEqual(messages.map((m) => m.data), ["complete"]);
  });
});

// ----------------------------------------------------------------------------- EventStream

const JOB = "00000000-0000-4000-8000-000000000001";

function event(id: string, type: JobEvent["type"], status: JobEvent["status"] = "processing"): string {
  const body = { id, record_id: 1, job_id: JOB, type, data: {}, status, progress: 0, created_at: "2026-01-01T00:00:00Z" };
  return `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(body)}\n\n`;
}

/** A body that sends `chunks`, then either ends or errors (a dropped connection). */
function body(chunks: string[], drop = false): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const queue = [...chunks];
  return new ReadableStream({
    pull(controller) {
      const chunk = queue.shift();
      if (chunk !== undefined) controller.enqueue(encoder.encode(chunk));
      else if (drop) controller.error(new TypeError("terminated"));
      else controller.close();
    },
  });
}

type Answer = Response | Error;

/** A fetch that answers in turn and records each request's headers. */
function fakeFetch(answers: Answer[]) {
  const requests: Headers[] = [];
  const fetch = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    requests.push(new Headers(init?.headers));
    const answer = answers.shift();
    assert.ok(answer, "no more answers");
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { fetch, requests };
}

const sse = (chunks: string[], drop = false): Response =>
  new Response(body(chunks, drop), { headers: { "Content-Type": "text/event-stream" } });
const fast = { initialDelayMs: 1, maxDelayMs: 2, random: () => 0 };

async function collect(stream: EventStream): Promise<string[]> {
  const out: string[] = [];
  for await (const item of stream) out.push(item.kind === "gap" ? `gap:${item.after}` : item.event.id);
  return out;
}

describe("EventStream", () => {
  test("reconnects after a dropped connection and resumes after the last id", async () => {
    const { fetch, requests } = fakeFetch([
      sse(["retry: 1\n\n", event("1-0", "submitted", "pending"), event("2-0", "started")], true),
      new TypeError("fetch failed"), // the server is briefly unreachable
      sse([event("3-0", "progress"), event("4-0", "completed", "completed")]),
    ]);
    let tokens = 0;
    const stream = new EventStream({ url: "http://x/stream", token: () => `t${++tokens}`, endsAfterTerminal: true, fetch, ...fast });
    assert.deepEqual(await collect(stream), ["1-0", "2-0", "3-0", "4-0"]);
    assert.deepEqual(requests.map((h) => h.get("Last-Event-ID")), [null, "2-0", "2-0"]);
    assert.deepEqual(requests.map((h) => h.get("Authorization")), ["Bearer t1", "Bearer t2", "Bearer t3"]);
    assert.equal(stream.lastEventId, "4-0");
  });

  test("a comment's change is an item of its own, and a resume goes on after it", async () => {
    const comment = {
      id: "2-0", type: "comment.created", project_id: JOB, member_id: JOB, created_at: "2026-01-01T00:00:00Z",
      comment: { id: JOB, parent_id: null, member_id: JOB, text: "Tighten this", start_ms: 0, end_ms: 10, edl_version: 1,
                 resolved_at: null, resolved_by: null, created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-01T00:00:00Z" },
    };
    const { fetch, requests } = fakeFetch([
      sse([event("1-0", "submitted", "pending"), `id: 2-0\nevent: comment.created\ndata: ${JSON.stringify(comment)}\n\n`], true),
      sse([event("3-0", "completed", "completed")]),
    ]);
    const stream = new EventStream({ url: "http://x/stream", token: "t", endsAfterTerminal: true, fetch, ...fast });
    const kinds: string[] = [];
    for await (const item of stream) kinds.push(item.kind === "comment" ? `${item.event.type}:${item.event.comment.text}` : item.kind);
    assert.deepEqual(kinds, ["event", "comment.created:Tighten this", "event"]);
    assert.equal(requests[1]?.get("Last-Event-ID"), "2-0");
  });

  test("an account's event (a spend cap's threshold) is an item of its own", async () => {
    const alert = {
      id: "2-0", type: "spend_cap.threshold", alert_id: 7, cap: "workspace", threshold: 80, monthly_limit: 500,
      spent: 400, month: "2026-11", resets_at: "2026-12-01T00:00:00Z", job_id: JOB, created_at: "2026-11-20T00:00:00Z",
    };
    const { fetch } = fakeFetch([
      sse([event("1-0", "submitted", "pending"), `id: 2-0\nevent: spend_cap.threshold\ndata: ${JSON.stringify(alert)}\n\n`,
           event("3-0", "completed", "completed")]),
    ]);
    const stream = new EventStream({ url: "http://x/stream", token: "t", endsAfterTerminal: true, fetch, ...fast });
    const kinds: string[] = [];
    for await (const item of stream) {
      kinds.push(item.kind === "account" && item.event.type === "spend_cap.threshold"
        ? `${item.event.cap}:${item.event.threshold}` : item.kind);
    }
    assert.deepEqual(kinds, ["event", "workspace:80", "event"]);
  });

  test("a review hold set and lifted are account items saying why", async () => {
    const hold = (id: string, state: string) =>
      `id: ${id}\nevent: account.review_hold\ndata: ${JSON.stringify({
        id, type: "account.review_hold", state, reason: "refusals", created_at: "2026-11-29T00:00:00Z" })}\n\n`;
    const { fetch, requests } = fakeFetch([
      sse([event("1-0", "submitted", "pending"), hold("2-0", "held")], true),
      sse([hold("3-0", "lifted"), event("4-0", "completed", "completed")]),
    ]);
    const stream = new EventStream({ url: "http://x/stream", token: "t", endsAfterTerminal: true, fetch, ...fast });
    const kinds: string[] = [];
    for await (const item of stream) {
      kinds.push(item.kind === "account" && item.event.type === "account.review_hold"
        ? `${item.event.state}:${item.event.reason}` : item.kind);
    }
    assert.deepEqual(kinds, ["event", "held:refusals", "lifted:refusals", "event"]);
    assert.equal(requests[1]?.get("Last-Event-ID"), "2-0"); // resumed after the hold
  });

  test("an expired token's error event reconnects with a fresh token; a token refused then is a typed 401", async () => {
    const expired = 'event: error\ndata: {"error": {"code": "invalid_token", "message": "expired"}}\n\n';
    const refused = new Response(JSON.stringify({ error: { code: "invalid_token", message: "no", details: {} } }), { status: 401 });
    const { fetch, requests } = fakeFetch([sse([event("1-0", "submitted", "pending"), expired]), refused]);
    const stream = new EventStream({ url: "http://x/stream", token: "t", fetch, ...fast });
    const seen: string[] = [];
    await assert.rejects(async () => {
      for await (const item of stream) if (item.kind === "event") seen.push(item.event.id);
    }, AuthenticationError);
    assert.deepEqual(seen, ["1-0"]);
    assert.equal(requests[1]?.get("Last-Event-ID"), "1-0");
  });

  test("retries 429 and 503, but a 404 ends it at once with the typed error", async () => {
    const json = (status: number, code: string): Response =>
      new Response(JSON.stringify({ error: { code, message: code, details: {} } }), { status, headers: { "Retry-After": "0" } });
    const { fetch, requests } = fakeFetch([json(429, "too_many_streams"), json(503, "service_unavailable"), json(404, "job_not_found")]);
    await assert.rejects(collect(new EventStream({ url: "http://x/s", token: "t", fetch, ...fast })), (error: unknown) => {
      assert.ok(error instanceof NotFoundError);
      assert.equal(error.code, "job_not_found");
      return true;
    });
    assert.equal(requests.length, 3);
  });

  test("a gap is passed on, and the stream goes on after it", async () => {
    const gap = 'event: gap\ndata: {"after": "1-0", "message": "gone"}\n\n';
    const { fetch } = fakeFetch([sse([gap, event("9-0", "completed", "completed")])]);
    assert.deepEqual(await collect(new EventStream({ url: "http://x/s", token: "t", fetch, endsAfterTerminal: true, lastEventId: "1-0" })), [
      "gap:1-0",
      "9-0",
    ]);
  });

  test("gives up after maxAttempts failures in a row, with the last failure as the cause", async () => {
    const { fetch, requests } = fakeFetch([new TypeError("a"), new TypeError("b"), new TypeError("c")]);
    await assert.rejects(collect(new EventStream({ url: "http://x/s", token: "t", fetch, ...fast, maxAttempts: 3 })), (error: unknown) => {
      assert.ok(error instanceof StreamClosedError);
      assert.equal((error.cause as Error).message, "c");
      return true;
    });
    assert.equal(requests.length, 3);
  });

  test("a stalled connection (no data, no heartbeat) is dropped and resumed", async () => {
    const stalled = new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(event("1-0", "submitted", "pending")));
        },
      }),
    );
    const { fetch, requests } = fakeFetch([stalled, sse([event("2-0", "completed", "completed")])]);
    const stream = new EventStream({ url: "http://x/s", token: "t", fetch, ...fast, endsAfterTerminal: true, idleTimeoutMs: 50 });
    assert.deepEqual(await collect(stream), ["1-0", "2-0"]);
    assert.equal(requests[1]?.get("Last-Event-ID"), "1-0");
  });

  test("close() ends the iteration", async () => {
    const endless = new Response(new ReadableStream<Uint8Array>({ start() {} }));
    const { fetch } = fakeFetch([endless]);
    const stream = new EventStream({ url: "http://x/s", token: "t", fetch });
    setTimeout(() => stream.close(), 20);
    assert.deepEqual(await collect(stream), []);
  });
});
