// The WebSocket subscription's protocol, reconnect and resume, on a scripted fake socket.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { JobEventsSocket, SocketClosedError, type JobEvent, type WebSocketLike } from "../src/index.js";

type Listener = (event: never) => void;

/** A socket whose server side is a script: `onSend` answers each client message. */
class FakeSocket implements WebSocketLike {
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  private readonly listeners = new Map<string, Listener[]>();

  constructor(private readonly onSend: (socket: FakeSocket, message: Record<string, unknown>) => void) {
    setTimeout(() => {
      this.readyState = 1;
      this.emit("open", {});
    }, 0);
  }

  addEventListener(type: string, listener: Listener): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  send(data: string): void {
    const message = JSON.parse(data) as Record<string, unknown>;
    this.sent.push(message);
    setTimeout(() => this.onSend(this, message), 0);
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    setTimeout(() => this.emit("close", { code, reason }), 0);
  }

  serverSends(message: unknown): void {
    this.emit("message", { data: JSON.stringify(message) });
  }

  private emit(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) (listener as (e: unknown) => void)(event);
  }
}

const JOB = "00000000-0000-4000-8000-000000000002";
const jobEvent = (id: string, type: JobEvent["type"]): Record<string, unknown> => ({
  type: "job.event",
  job_id: JOB,
  event: { id, record_id: 1, job_id: JOB, type, data: {}, status: "processing", progress: 0, created_at: "2026-01-01T00:00:00Z" },
});
const fast = { initialDelayMs: 1, maxDelayMs: 2, random: () => 0 };

describe("JobEventsSocket", () => {
  test("on a runtime without a global WebSocket (Node 20) and no option, it says which option to pass", async () => {
    const platform = (globalThis as { WebSocket?: unknown }).WebSocket;
    delete (globalThis as { WebSocket?: unknown }).WebSocket;
    try {
      const socket = new JobEventsSocket({ url: "ws://x", token: "t", maxAttempts: 1 });
      await assert.rejects(async () => {
        for await (const _ of socket) break;
      }, (error: Error) => error instanceof TypeError && error.message.includes("`webSocket` option"));
    } finally {
      if (platform !== undefined) (globalThis as { WebSocket?: unknown }).WebSocket = platform;
    }
  });

  test("authenticates, subscribes, and after a 1013 reconnects and resumes after the last id", async () => {
    const sockets: FakeSocket[] = [];
    const factory = (): FakeSocket => {
      const n = sockets.length;
      const socket = new FakeSocket((s, message) => {
        if (message["type"] === "auth") s.serverSends({ type: "ready" });
        if (message["type"] === "subscribe") s.serverSends({ type: "subscribed", job_id: message["job_id"] });
        if (n === 0 && message["type"] === "subscribe") {
          s.serverSends(jobEvent("1-0", "submitted"));
          s.serverSends({ type: "ping" });
          s.serverSends(jobEvent("2-0", "started"));
          s.close(1013, "fell behind");
        }
        if (n === 1 && message["type"] === "resume") {
          s.serverSends({ type: "gap", after: message["after"] });
          s.serverSends(jobEvent("3-0", "completed"));
        }
      });
      sockets.push(socket);
      return socket;
    };
    const socket = new JobEventsSocket({ url: "ws://x", token: "tok", jobIds: [JOB], webSocket: factory, ...fast });
    const seen: string[] = [];
    for await (const item of socket) {
      seen.push(item.kind === "gap" ? `gap:${item.after}` : item.event.id);
      if (seen.length === 4) socket.close();
    }
    assert.deepEqual(seen, ["1-0", "2-0", "gap:2-0", "3-0"]);
    assert.deepEqual(sockets[0]?.sent, [{ type: "auth", token: "tok" }, { type: "subscribe", job_id: JOB }]);
    assert.deepEqual(sockets[1]?.sent, [
      { type: "auth", token: "tok" },
      { type: "subscribe", job_id: JOB },
      { type: "resume", after: "2-0" },
    ]);
    assert.equal(socket.lastEventId, "3-0");
  });

  test("an unknown job (4404) ends it with the close code, without reconnecting", async () => {
    let opened = 0;
    const factory = (): FakeSocket => {
      opened++;
      return new FakeSocket((s, message) => {
        if (message["type"] === "auth") s.serverSends({ type: "ready" });
        if (message["type"] === "subscribe") s.close(4404, "job_not_found");
      });
    };
    const socket = new JobEventsSocket({ url: "ws://x", token: "t", jobIds: [JOB], webSocket: factory, ...fast });
    await assert.rejects(async () => {
      for await (const item of socket) assert.fail(JSON.stringify(item));
    }, (error: unknown) => error instanceof SocketClosedError && error.code === 4404);
    assert.equal(opened, 1);
  });

  test("a workspace is named in the auth message; a role refused there (4403) ends it without reconnecting", async () => {
    const sockets: FakeSocket[] = [];
    const factory = (): FakeSocket => {
      const socket = new FakeSocket((s, message) => {
        if (message["type"] === "auth") s.close(4403, "permission_denied");
      });
      sockets.push(socket);
      return socket;
    };
    const socket = new JobEventsSocket({ url: "ws://x", token: "t", workspace: "ws-9", webSocket: factory, ...fast });
    await assert.rejects(async () => {
      for await (const item of socket) assert.fail(JSON.stringify(item));
    }, (error: unknown) => error instanceof SocketClosedError && error.code === 4403);
    assert.equal(sockets.length, 1);
    assert.deepEqual(sockets[0]?.sent, [{ type: "auth", token: "t", workspace: "ws-9" }]);
  });

  test("a token refused (4401) is asked for again once; refused again, it ends", async () => {
    const tokens: string[] = [];
    const factory = (): FakeSocket => new FakeSocket((s) => s.close(4401, "invalid_token"));
    let n = 0;
    const socket = new JobEventsSocket({ url: "ws://x", token: () => `t${++n}`, webSocket: factory, ...fast });
    await assert.rejects(async () => {
      for await (const item of socket) assert.fail(JSON.stringify(item));
    }, (error: unknown) => error instanceof SocketClosedError && error.code === 4401);
    tokens.push(`t${n}`);
    assert.equal(n, 2);
  });
});
