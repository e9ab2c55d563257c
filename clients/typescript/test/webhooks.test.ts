// Standard Webhooks verification, against signatures made independently with node:crypto.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, test } from "node:test";

import { signWebhook, verifyWebhook, WebhookVerificationError } from "../src/index.js";

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const body = JSON.stringify({ type: "job.completed", timestamp: "2026-01-01T00:00:00Z", data: { id: "j" } });
const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const now = 1_767_225_600;

function reference(msgId: string, timestamp: number, payload: string): string {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  return `v1,${createHmac("sha256", key).update(`${msgId}.${timestamp}.${payload}`).digest("base64")}`;
}

const headers = (signature: string, timestamp = now): Record<string, string> => ({
  "webhook-id": id,
  "webhook-timestamp": String(timestamp),
  "webhook-signature": signature,
});

describe("verifyWebhook", () => {
  test("accepts a valid signature, from a Headers or a plain object, among others", async () => {
    const signature = reference(id, now, body);
    const payload = await verifyWebhook({ secret, headers: headers(signature), body, now });
    assert.equal(payload.type, "job.completed");
    await verifyWebhook({ secret, headers: new Headers(headers(`v1,AAAA ${signature} v2,zzz`)), body, now });
    await verifyWebhook({ secret, headers: headers(signature), body: new TextEncoder().encode(body), now });
  });

  test("signWebhook signs as the reference does", async () => {
    assert.equal(await signWebhook({ secret, id, timestamp: now, body }), reference(id, now, body));
  });

  const refused: [string, () => Promise<unknown>][] = [
    ["a changed body", () => verifyWebhook({ secret, headers: headers(reference(id, now, body)), body: body + " ", now })],
    ["another id", () => verifyWebhook({ secret, headers: { ...headers(reference("msg_other", now, body)) }, body, now })],
    ["an old timestamp", () => verifyWebhook({ secret, headers: headers(reference(id, now - 301, body), now - 301), body, now })],
    ["a future timestamp", () => verifyWebhook({ secret, headers: headers(reference(id, now + 301, body), now + 301), body, now })],
    ["a missing header", () => verifyWebhook({ secret, headers: { "webhook-id": id }, body, now })],
    ["another secret", () => verifyWebhook({ secret: "whsec_" + btoa("x".repeat(24)), headers: headers(reference(id, now, body)), body, now })],
    ["a malformed signature", () => verifyWebhook({ secret, headers: headers("v1,not base64!"), body, now })],
  ];
  for (const [what, call] of refused) {
    test(`refuses ${what}`, async () => {
      await assert.rejects(call(), WebhookVerificationError);
    });
  }
});
