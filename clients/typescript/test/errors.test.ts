// Typed errors from answers as the API writes them: a held account's 403 is told apart from the other 403s.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AccountUnderReviewError, apiError, AuteurClient, ConsentRequiredError, ForbiddenError } from "../src/index.js";

const held = {
  error: {
    code: "account_under_review",
    message: "This account's requests to generate content are held for review by our staff.",
    details: { held_since: "2026-11-29T11:32:57.634Z", reason: "refusals" },
  },
};

test("403 account_under_review from a submission is an AccountUnderReviewError saying since when and why", async () => {
  const seen: string[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    seen.push(`${request.method} ${new URL(request.url).pathname}`);
    return new Response(JSON.stringify(held), { status: 403, headers: { "Content-Type": "application/json" } });
  };
  const client = new AuteurClient({ baseUrl: "http://api.test", token: "t", fetch });
  await assert.rejects(client.submitJob("tts", { project_id: "p", text: "Hello" }), (error: unknown) => {
    assert.ok(error instanceof AccountUnderReviewError, String(error));
    assert.ok(error instanceof ForbiddenError);
    assert.equal(error.status, 403);
    assert.equal(error.code, "account_under_review");
    assert.equal(error.heldSince, "2026-11-29T11:32:57.634Z");
    assert.equal(error.reason, "refusals");
    return true;
  });
  assert.deepEqual(seen, ["POST /api/v1/jobs/tts"]); // refused once, not retried
});

test("other 403s stay what they were", () => {
  const plan = apiError(403, { error: { code: "plan_required", message: "Pro only.", details: {} } });
  assert.ok(plan instanceof ForbiddenError && !(plan instanceof AccountUnderReviewError));
  const consent = apiError(403, { error: { code: "consent_required", message: "No consent.", details: {} } });
  assert.ok(consent instanceof ConsentRequiredError && !(consent instanceof AccountUnderReviewError));
  assert.equal(consent.mediaId, null);
  const face = apiError(403, { error: { code: "consent_required", message: "No likeness consent.",
    details: { field: "video_media_id", media_id: "5f0c", reason: "policy" } } });
  assert.ok(face instanceof ConsentRequiredError);
  assert.equal(face.field, "video_media_id");
  assert.equal(face.mediaId, "5f0c");
  assert.equal(face.reason, "policy");
  assert.equal(face.voiceId, null);
  const bare = apiError(403, { error: { code: "account_under_review", message: "Held." } });
  assert.ok(bare instanceof AccountUnderReviewError);
  assert.equal(bare.heldSince, null);
  assert.equal(bare.reason, null);
});
