export * from "./client.js";
export * from "./errors.js";
export * from "./events.js";
export * from "./sse.js";
export * from "./websocket.js";
export * from "./webhooks.js";
export { backoffDelay, type ReconnectOptions, type TokenSource } from "./retry.js";
export type { components, paths } from "./generated/openapi.js";
export type { components as eventComponents } from "./generated/events.js";
