import type { WebhookPayload } from "./events.js";

/** A delivery that must not be trusted: a bad or missing signature, or a timestamp too old or too
 * far ahead (a replay). Answer it with a 4xx and do not act on it. */
export class WebhookVerificationError extends Error {
  override readonly name = "WebhookVerificationError";
}

export interface VerifyWebhookOptions {
  /** The endpoint's signing secret, `whsec_` + base64 (POST /webhooks's `secret`, or
   * GET /webhooks/default/secret's `key` for the webhooks given with job submissions). */
  secret: string;
  /** The delivery's headers (a `Headers`, or a plain object such as Node's `req.headers`). */
  headers: Headers | Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The raw body exactly as received: a re-serialized JSON object would not match its signature. */
  body: string | Uint8Array;
  /** How far the timestamp may be from now. Default 300 s, as Standard Webhooks recommends. */
  toleranceSeconds?: number;
  /** "Now", in seconds since the epoch (tests). */
  now?: number;
}

const encoder = new TextEncoder();

function header(headers: VerifyWebhookOptions["headers"], name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    return typeof value === "string" ? value : value.join(", ");
  }
  return undefined;
}

function base64Bytes(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}

/** Verifies a delivery signed per Standard Webhooks (HMAC-SHA256 over `id.timestamp.body`, any
 * of the space-separated `v1,<base64>` signatures) and returns its body parsed and typed. The
 * comparison is WebCrypto's `verify`, which takes the same time whatever the signature. */
export async function verifyWebhook(options: VerifyWebhookOptions): Promise<WebhookPayload> {
  const id = header(options.headers, "webhook-id");
  const timestamp = header(options.headers, "webhook-timestamp");
  const signatures = header(options.headers, "webhook-signature");
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  if (!/^\d{1,15}$/.test(timestamp)) throw new WebhookVerificationError("invalid webhook-timestamp");
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? 300;
  if (Math.abs(now - Number(timestamp)) > tolerance) throw new WebhookVerificationError("webhook-timestamp outside the tolerance");

  const secret = base64Bytes(options.secret.startsWith("whsec_") ? options.secret.slice("whsec_".length) : options.secret);
  if (!secret || secret.length === 0) throw new WebhookVerificationError("the secret is not whsec_ + base64");
  const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const body = typeof options.body === "string" ? options.body : new TextDecoder().decode(options.body);
  const signed = encoder.encode(`${id}.${timestamp}.${body}`);
  let valid = false;
  for (const candidate of signatures.split(" ")) {
    const [version, value] = candidate.split(",", 2);
    if (version !== "v1" || !value) continue;
    const bytes = base64Bytes(value);
    if (bytes && (await crypto.subtle.verify("HMAC", key, bytes, signed))) valid = true;
  }
  if (!valid) throw new WebhookVerificationError("no valid signature");
  let payload: unknown;
  try {
    payload = JSON.parse(body);
  } catch {
    throw new WebhookVerificationError("the body is not JSON");
  }
  if (typeof payload !== "object" || payload === null || typeof (payload as { type?: unknown }).type !== "string") {
    throw new WebhookVerificationError("the body is not a webhook payload");
  }
  return payload as WebhookPayload;
}

/** Signs a body as the server does (for a receiver's own tests). */
export async function signWebhook(options: { secret: string; id: string; timestamp: number; body: string }): Promise<string> {
  const secret = base64Bytes(options.secret.replace(/^whsec_/, ""));
  if (!secret) throw new TypeError("the secret is not whsec_ + base64");
  const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${options.id}.${options.timestamp}.${options.body}`));
  return `v1,${btoa(String.fromCharCode(...new Uint8Array(mac)))}`;
}
