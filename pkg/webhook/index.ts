export { createWebhookServer } from './server.js';
export type { WebhookName, WebhookServer, WebhookServerOptions } from './server.js';
export { DEFAULT_BODY_LIMIT_BYTES, readBody } from './body.js';
export { DURATION_BUCKETS, webhookMetrics } from './metrics.js';
export type { WebhookMetrics } from './metrics.js';
export { TlsReloader, loadTlsPair } from './tls-reloader.js';
export type { TlsPair } from './tls-reloader.js';
