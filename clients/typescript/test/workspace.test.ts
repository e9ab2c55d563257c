// The workspace a client acts in goes with every request it makes, as the Auteur-Workspace header.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AuteurClient, EventStream } from "../src/index.js";

function recording(): { fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>; seen: Headers[] } {
  const seen: Headers[] = [];
  return {
    seen,
    fetch: async (input, init) => {
      seen.push(input instanceof Request ? input.headers : new Headers(init?.headers));
      return new Response(JSON.stringify({ projects: [], count: 0, next: null, previous: null }), {
        status: 200, headers: { "Content-Type": "application/json" },
      });
    },
  };
}

test("a client given a workspace names it on its REST requests; without one, it sends none", async () => {
  const team = recording();
  await new AuteurClient({ baseUrl: "http://api.test", token: "t", workspace: "ws-1", fetch: team.fetch }).api.GET("/api/v1/projects");
  assert.equal(team.seen[0]?.get("Auteur-Workspace"), "ws-1");
  assert.equal(team.seen[0]?.get("Authorization"), "Bearer t");

  const personal = recording();
  await new AuteurClient({ baseUrl: "http://api.test", token: "t", fetch: personal.fetch }).api.GET("/api/v1/projects");
  assert.equal(personal.seen[0]?.get("Auteur-Workspace"), null);
});

test("an event stream given a workspace names it when it connects", async () => {
  const seen: Record<string, string>[] = [];
  const stream = new EventStream({
    url: "http://api.test/api/v1/events/stream", token: "t", workspace: "ws-2", maxAttempts: 1,
    fetch: async (_input, init) => {
      seen.push(init?.headers as Record<string, string>);
      return new Response(JSON.stringify({ error: { code: "not_found", message: "x", details: {} } }), { status: 404 });
    },
  });
  await assert.rejects(async () => {
    for await (const _ of stream) break;
  });
  assert.equal(seen[0]?.["Auteur-Workspace"], "ws-2");
});
