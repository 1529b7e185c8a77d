/** The webhook's Prometheus metrics (get-or-create, so two servers may share a registry). */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { counter, gauge, histogram } from '../telemetry/metrics.js';

/** Up to the validating timeout (3 s): the top bucket shows requests the API server gave up on. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3,
];

export interface WebhookMetrics {
  requests: Counter<'webhook' | 'operation' | 'kind' | 'decision'>;
  duration: Histogram<'webhook'>;
  tlsReloads: Counter<'result'>;
  certExpiry: Gauge;
}

export function webhookMetrics(registry: Registry): WebhookMetrics {
  return {
    requests: counter(registry, {
      name: 'erpguard_admission_requests_total',
      help: 'Admission requests by webhook (validate, mutate), operation, kind and decision (allowed, denied, warned, patched, skipped, error, rejected = HTTP 4xx).',
      labelNames: ['webhook', 'operation', 'kind', 'decision'],
    }),
    duration: histogram(registry, {
      name: 'erpguard_admission_duration_seconds',
      help: 'Time from receiving an admission request to sending the response, body reading included.',
      labelNames: ['webhook'],
      buckets: DURATION_BUCKETS,
    }),
    tlsReloads: counter(registry, {
      name: 'erpguard_webhook_tls_reloads_total',
      help: 'Attempts to load a changed serving certificate (result: success, failure).',
      labelNames: ['result'],
    }),
    certExpiry: gauge(registry, {
      name: 'erpguard_webhook_certificate_expiration_timestamp_seconds',
      help: 'notAfter of the serving certificate in use, as a Unix time.',
    }),
  };
}
