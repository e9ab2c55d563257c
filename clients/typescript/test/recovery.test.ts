// A submission whose answer was lost is recovered by its Idempotency-Key: the job the key made is
// looked for first (GET /jobs?idempotency_key=), and never submitted twice.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AuteurClient, NotFoundError } from "../src/index.js";

type Answer = Response | Error;

/** A fake server: each request's method and path with query, answered in turn by `answer`. */
function server(answer: (method: string, url: URL, headers: Headers) => Answer): {
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  seen: string[];
  keys: (string | null)[];
} {
  const seen: string[] = [];
  const keys: (string | null)[] = [];
  return {
    seen,
    keys,
    fetch: async (input, init) => {
      const request = input instanceof Request ? input : new Request(String(input), init);
      const url = new URL(request.url);
      seen.push(`${request.method} ${url.pathname}${url.search}`);
      keys.push(request.headers.get("Idempotency-Key"));
      const answered = answer(request.method, url, request.headers);
      if (answered instanceof Error) throw answered;
      return answered;
    },
  };
}

const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const JOB = { id: "j-1", type: "tts", status: "pending", credits_cost: 2, cache: { hit: false, source_job_id: null } };
const ACCEPTED = {
  job_id: "j-1", status: "pending", credits_cost: 2, cache: { hit: false, source_job_id: null }, deduplicated: false,
};
const lost = (): Error => new TypeError("fetch failed");

function client(fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>): AuteurClient {
  return new AuteurClient({ baseUrl: "http://api.test", token: "t", fetch });
}

test("an answer lost after the server made the job: the job is found by its key, not submitted again", async () => {
  const api = server((method, url) => {
    if (method === "POST") return lost();
    if (url.pathname === "/api/v1/jobs") return json({ jobs: [JOB], count: 1, next: null, previous: null });
    return json(JOB);
  });
  const submitted = await client(api.fetch).submitJob("tts", { project_id: "p", text: "Hi" }, { idempotencyKey: "k-1" });
  assert.deepEqual(submitted, { state: "accepted", accepted: ACCEPTED, recovered: true });
  assert.deepEqual(api.seen, ["POST /api/v1/jobs/tts", "GET /api/v1/jobs?idempotency_key=k-1", "GET /api/v1/jobs/j-1"]);
});

test("a submission that never arrived is sent again with the same key once the key finds nothing", async () => {
  let posts = 0;
  const api = server((method, url) => {
    if (method === "POST") return (posts += 1) === 1 ? json({}, 503) : json(ACCEPTED, 202);
    assert.equal(url.searchParams.get("idempotency_key"), "k-2");
    return json({ jobs: [], count: 0, next: null, previous: null });
  });
  const submitted = await client(api.fetch).submitJob("tts", { project_id: "p", text: "Hi" }, { idempotencyKey: "k-2" });
  assert.deepEqual(submitted, { state: "accepted", accepted: ACCEPTED });
  assert.deepEqual(api.keys.filter((_, i) => api.seen[i]?.startsWith("POST")), ["k-2", "k-2"]);
});

test("without a key, or for an answer the server gave, nothing is tried again", async () => {
  const unkeyed = server(() => lost());
  await assert.rejects(client(unkeyed.fetch).submitJob("tts", { project_id: "p", text: "Hi" }), TypeError);
  assert.equal(unkeyed.seen.length, 1);

  const refused = server(() => json({ error: { code: "not_found", message: "No such project.", details: {} } }, 404));
  await assert.rejects(
    client(refused.fetch).submitJob("tts", { project_id: "p", text: "Hi" }, { idempotencyKey: "k-3" }),
    NotFoundError,
  );
  assert.equal(refused.seen.length, 1);
});

test("the retries are bounded: the last lost answer is the caller's error", async () => {
  const api = server((method) => (method === "POST" ? lost() : json({ jobs: [], count: 0, next: null, previous: null })));
  await assert.rejects(
    client(api.fetch).submitJob("tts", { project_id: "p", text: "Hi" }, { idempotencyKey: "k-4", retries: 1 }),
    TypeError,
  );
  assert.deepEqual(api.seen, ["POST /api/v1/jobs/tts", "GET /api/v1/jobs?idempotency_key=k-4", "POST /api/v1/jobs/tts"]);
});
