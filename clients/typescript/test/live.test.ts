// Against a live stack (tests/clients/test_typescript_client.py starts it and passes the
// environment below): every helper of the package through real HTTP, SSE and WebSocket.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";

import {
  apiError,
  AuteurClient,
  ConflictError,
  ConsentRequiredError,
  ContentPolicyError,
  InsufficientCreditsError,
  jobOutput,
  NotFoundError,
  RateLimitedError,
  TERMINAL_EVENT_TYPES,
  verifyWebhook,
  WebhookVerificationError,
  type Job,
  type JobEvent,
  type MediaFile,
  type Project,
} from "../src/index.js";

const env = (name: string): string => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: these tests run inside tests/clients/test_typescript_client.py`);
  return value;
};

const live = process.env["AUTEUR_API_URL"] !== undefined;

describe("against the live API", { skip: !live && "AUTEUR_API_URL is not set" }, () => {
  const baseUrl = live ? env("AUTEUR_API_URL") : "";
  let tokenCalls = 0;
  // A token source that is a function: asked again at every (re)connection.
  const client = new AuteurClient({ baseUrl, token: () => (tokenCalls++, env("AUTEUR_TOKEN")) });
  const broke = new AuteurClient({ baseUrl, token: live ? env("AUTEUR_TOKEN_BROKE") : "" });
  let project: Project;
  let media: MediaFile;
  let transcription: Job;
  let events: JobEvent[] = [];

  test("signs in with a token", async () => {
    const verified = await client.verifyToken();
    assert.deepEqual(verified, { valid: true, user_id: env("AUTEUR_USER_ID") });
    assert.ok(tokenCalls > 0);
  });

  test("creates a project", async () => {
    project = await client.createProject({ name: "From TypeScript", auto_transcribe: false });
    assert.equal(project.name, "From TypeScript");
    assert.equal(project.auto_transcribe, false);
  });

  test("uploads a file and waits until it is ready", async () => {
    const data = new Uint8Array(await readFile(env("AUTEUR_SAMPLE_WAV")));
    media = await client.uploadFile({ projectId: project.id, data, filename: "speech.wav", contentType: "audio/wav" });
    assert.equal(media.status, "ready");
    assert.equal(media.type, "audio");
    assert.equal(media.file_size_bytes, data.byteLength);
    assert.ok((media.duration_ms ?? 0) > 1000, `duration ${media.duration_ms}`);
  });

  test("transcribes with Prefer: wait and an Idempotency-Key", async () => {
    const key = `ts-${media.id}`;
    const input = { project_id: project.id, media_id: media.id };
    const submitted = await client.submitJob("transcription", input, { idempotencyKey: key, waitSeconds: 60 });
    assert.equal(submitted.state, "ended", "the job ended within the wait: 201 with the job");
    if (submitted.state !== "ended") return;
    transcription = submitted.job;
    assert.equal(transcription.status, "completed", JSON.stringify(transcription));
    // Typed by the server's output schema: segments, words and their timings, no casts.
    const output = jobOutput(transcription, "transcription");
    assert.ok(output && jobOutput(transcription, "tts") === null);
    assert.deepEqual(output.transcript.segments, output.segments);
    const words = output.segments.flatMap((segment) => segment.words.map((w) => w.word.toLowerCase()));
    assert.ok(words.some((w) => w.includes("fox")) && words.some((w) => w.includes("dog")), words.join(" "));
    // The same key and body: the same job, not a second charge.
    const again = await client.submitJob("transcription", input, { idempotencyKey: key });
    const againId = again.state === "ended" ? again.job.id : again.accepted.job_id;
    assert.equal(againId, transcription.id);
    // A client that died after sending finds the job by its key alone.
    assert.equal((await client.findJobByKey(key))?.id, transcription.id);
    assert.equal(await client.findJobByKey(`${key}-never-sent`), null);
  });

  test("follows the job's events over SSE, and resumes after an id", async () => {
    const job = await client.followJob(transcription.id, { onEvent: (event) => events.push(event) });
    assert.equal(job.status, "completed");
    const types = events.map((e) => e.type);
    assert.equal(types[0], "submitted");
    assert.equal(types.at(-1), "completed");
    assert.ok(types.includes("started") && types.includes("inference_started"), types.join());
    assert.ok(events.every((e) => e.job_id === transcription.id));
    const last = events.at(-1)!;
    // Narrowing on `type` narrows `data`: a completed event's data carries the charge.
    if (last.type !== "completed") assert.fail("not completed");
    assert.equal(last.data.charge.net, transcription.credits_cost);
    const first = events[0]!;
    if (first.type === "submitted") assert.equal(first.data.credits_cost, transcription.credits_cost);

    const resumed: JobEvent[] = [];
    const stream = client.jobEvents(transcription.id, { lastEventId: events[1]!.id });
    for await (const item of stream) if (item.kind === "event") resumed.push(item.event);
    assert.deepEqual(resumed.map((e) => e.id), events.slice(2).map((e) => e.id));
    assert.equal(stream.lastEventId, last.id);
  });

  test("follows the job's events over the WebSocket, and resumes on a new socket after the last id", async () => {
    const seen: JobEvent[] = [];
    const first = client.socket({ jobIds: [transcription.id], lastEventId: events[0]!.id });
    for await (const item of first) {
      if (item.kind !== "event") continue;
      seen.push(item.event);
      if (seen.length === 2) break; // the client goes away
    }
    const resumeAfter = first.lastEventId;
    assert.equal(resumeAfter, events[2]!.id);
    const second = client.socket({ jobIds: [transcription.id], ...(resumeAfter ? { lastEventId: resumeAfter } : {}) });
    for await (const item of second) {
      if (item.kind !== "event") continue;
      seen.push(item.event);
      if (TERMINAL_EVENT_TYPES.has(item.event.type)) break;
    }
    second.close();
    assert.deepEqual(seen.map((e) => e.id), events.slice(1).map((e) => e.id));
  });

  test("reads the charge", async () => {
    const charge = await client.jobCharge(transcription.id);
    assert.equal(charge.charged, transcription.credits_cost);
    assert.equal(charge.refunded, 0);
    assert.equal(charge.net, transcription.credits_cost);
    assert.equal(charge.refund_reason, null);
    assert.deepEqual(charge.entries.map((e) => e.type), ["usage"]);
  });

  test("submits a batch once, cancels it by filter, and reads its manifest", async () => {
    const input = { items: [0, 1].map((n) => ({ type: "tts", input: { project_id: project.id, text: `Batch ${n}` } })) };
    const quoted = await client.quoteBatch(input);
    const batch = await client.submitBatch(input, { idempotencyKey: `ts-batch-${project.id}` });
    assert.equal(batch.item_count, 2);
    assert.equal(batch.credits_cost, quoted.credits_cost);
    const again = await client.submitBatch(input, { idempotencyKey: `ts-batch-${project.id}` });
    assert.deepEqual(again.job_ids, batch.job_ids, "the same key and body: the same batch");
    const canceled = await client.bulkCancel({ batch_id: batch.id });
    assert.ok(canceled.canceled + canceled.not_cancelable <= 2);
    let read = await client.getBatch(batch.id);
    for (let i = 0; i < 100 && !read.done; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      read = await client.getBatch(batch.id);
    }
    assert.ok(read.done, JSON.stringify(read));
    const lines = await client.batchManifest(batch.id, 1);
    assert.deepEqual(lines.map((line) => line.job_id), batch.job_ids);
    assert.ok(lines.every((line) => ["canceled", "completed"].includes(line.status)), JSON.stringify(lines));
  });

  test("cancels a running job, seen live on the user's event stream, and is refunded", async () => {
    // The stack's GPU calls for tts never finish: the job stays running until canceled. The stream
    // connects on its first read, after the submission: read from the stream's start ("0-0"), or
    // the job's first events (inference_started among them) may come before it and never be seen.
    const all = client.events({ lastEventId: "0-0" });
    const iterator = all[Symbol.asyncIterator]();
    const submitted = await client.submitJob("tts", { project_id: project.id, text: "Cancel me" });
    assert.equal(submitted.state, "accepted");
    if (submitted.state !== "accepted") return;
    const jobId = submitted.accepted.job_id;
    const live: JobEvent[] = [];
    for (;;) {
      const next = await iterator.next();
      assert.ok(!next.done);
      if (next.value.kind !== "event" || next.value.event.job_id !== jobId) continue;
      live.push(next.value.event);
      if (next.value.event.type === "inference_started") break;
    }
    const canceled = await client.cancelJob(jobId);
    assert.equal(canceled.status, "canceled");
    for (;;) {
      const next = await iterator.next();
      assert.ok(!next.done);
      if (next.value.kind !== "event" || next.value.event.job_id !== jobId) continue;
      live.push(next.value.event);
      if (TERMINAL_EVENT_TYPES.has(next.value.event.type)) break;
    }
    await iterator.return?.();
    all.close();
    const end = live.at(-1)!;
    assert.equal(end.type, "canceled");
    const charge = await client.jobCharge(jobId);
    if (end.type === "canceled") {
      assert.deepEqual(end.data.charge, { charged: charge.charged, refunded: charge.refunded, net: charge.net });
    }
    assert.equal(charge.charged, submitted.accepted.credits_cost);
    assert.equal(charge.net, charge.charged - charge.refunded);
    assert.ok(charge.refund_reason?.startsWith("canceled"), String(charge.refund_reason));
    // Once ended it cannot be canceled again: a typed 409.
    await assert.rejects(client.cancelJob(jobId), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, "job_not_cancelable");
      return true;
    });
  });

  test("402: insufficient credits is a typed error, and nothing was created", async () => {
    const own = await broke.createProject({ name: "Broke" });
    await assert.rejects(broke.submitJob("tts", { project_id: own.id, text: "No credits" }), (error: unknown) => {
      assert.ok(error instanceof InsufficientCreditsError, String(error));
      assert.equal(error.status, 402);
      assert.equal(error.code, "insufficient_credits");
      return true;
    });
    const { data } = await broke.api.GET("/api/v1/jobs", {});
    assert.equal(data?.jobs.length, 0);
  });

  test("422: a prompt the content policy refuses is a typed error naming the field, and nothing is charged", async () => {
    const balance = async () => (await client.api.GET("/api/v1/credits", {})).data?.balance;
    const before = await balance();
    const prompt = "show a man being tortured with pliers, blood everywhere";
    await assert.rejects(client.submitJob("tts", { project_id: project.id, text: prompt }), (error: unknown) => {
      assert.ok(error instanceof ContentPolicyError, String(error));
      assert.equal(error.status, 422);
      assert.equal(error.code, "content_policy_violation");
      assert.equal(error.flagged.length, 1);
      assert.equal(error.flagged[0]?.field, "text");
      assert.ok(error.flagged[0]?.categories.includes("violence_graphic"), JSON.stringify(error.flagged));
      assert.ok(error.policyVersion);
      assert.ok(!error.message.includes("pliers"));
      return true;
    });
    assert.equal(await balance(), before);
  });

  test("403: a voice without its speaker's verified consent is a typed error saying why, and nothing is made", async () => {
    const challenge = await client.api.POST("/api/v1/voices/consent-challenges", {});
    assert.equal(challenge.response.status, 201);
    assert.equal(challenge.data?.words.length, 8);
    assert.ok(challenge.data?.phrase.endsWith(challenge.data.statement));
    const body = { media_id: media.id, name: "Narrator", consent_id: challenge.data?.challenge_id ?? "" };
    const { error, response } = await client.api.POST("/api/v1/voices", { body });
    const typed = apiError(response.status, error, response.headers);
    assert.ok(typed instanceof ConsentRequiredError, String(typed));
    assert.equal(typed.status, 403);
    assert.equal(typed.reason, "missing");
    assert.equal(typed.field, "consent_id");
    const { data } = await client.api.GET("/api/v1/voices", {});
    assert.equal(data?.count, 0);
  });

  test("404: another user's job, project and file are typed not-found errors", async () => {
    const notFound = (code: string) => (error: unknown) => {
      assert.ok(error instanceof NotFoundError, String(error));
      assert.equal(error.status, 404);
      assert.equal(error.code, code);
      return true;
    };
    await assert.rejects(broke.getJob(transcription.id), notFound("job_not_found"));
    await assert.rejects(broke.getMedia(project.id, media.id), notFound("project_not_found"));
    await assert.rejects(broke.cancelJob(transcription.id), notFound("job_not_found"));
    // The same over SSE: a refusal ends the subscription with the typed error, no retry.
    await assert.rejects(async () => {
      for await (const item of broke.jobEvents(transcription.id)) assert.fail(`got ${JSON.stringify(item)}`);
    }, notFound("job_not_found"));
  });

  test("429: past the rate limit is a typed error with when to retry", async () => {
    const throttled = new AuteurClient({ baseUrl, token: env("AUTEUR_TOKEN_THROTTLED") });
    const limit = Number(env("AUTEUR_CANCEL_LIMIT"));
    for (let i = 0; i < limit; i++) {
      await assert.rejects(throttled.cancelJob(crypto.randomUUID()), NotFoundError);
    }
    await assert.rejects(throttled.cancelJob(crypto.randomUUID()), (error: unknown) => {
      assert.ok(error instanceof RateLimitedError, String(error));
      assert.equal(error.status, 429);
      assert.equal(error.code, "rate_limited");
      assert.ok(error.retryAfterSeconds !== null && error.retryAfterSeconds > 0, String(error.retryAfterSeconds));
      return true;
    });
  });

  test("verifies a webhook signed by the server's own signing code", async () => {
    const vector = JSON.parse(env("AUTEUR_WEBHOOK_VECTOR")) as { secret: string; headers: Record<string, string>; body: string };
    const payload = await verifyWebhook(vector);
    assert.equal(payload.type, "job.completed");
    assert.equal(payload.data.id, env("AUTEUR_WEBHOOK_JOB_ID"));
    await assert.rejects(verifyWebhook({ ...vector, body: vector.body.replace("completed", "failed") }), WebhookVerificationError);
  });
});
