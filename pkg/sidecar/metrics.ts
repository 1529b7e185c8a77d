/**
 * Sidecar metrics on a Registry passed in. Labels are bounded: directions, decisions and reason
 * codes are closed sets; `source` and `destination` are module names (bounded by the modules that
 * hold certificates of the trust domain), never paths or identities.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { counter, gauge, histogram } from '../telemetry/metrics.js';

export interface SidecarMetrics {
  requests: Counter<'direction' | 'decision' | 'destination' | 'source'>;
  duration: Histogram<'direction'>;
  denied: Counter<'direction' | 'reason'>;
  rateLimited: Counter<'direction'>;
  masked: Counter;
  tokenized: Counter;
  snapshotVersion: Gauge;
  certExpiry: Gauge;
  tlsFailures: Counter<'reason'>;
  auditDropped: Counter;
  auditQueue: Gauge;
  /** Cached label children: prom-client hashes label sets on every inc otherwise. */
  countRequest(direction: string, decision: string, source: string, destination: string): void;
}

export function createSidecarMetrics(registry: Registry): SidecarMetrics {
  const requests = counter(registry, {
    name: 'erpguard_requests_total',
    help: 'Calls handled by the sidecar, by direction (inbound, outbound), decision (allow, deny, audit), destination and source module.',
    labelNames: ['direction', 'decision', 'destination', 'source'] as const,
  });
  const cache = new Map<string, { inc(): void }>();
  return {
    requests,
    duration: histogram(registry, {
      name: 'erpguard_request_duration_seconds',
      help: 'Time from request to the end of the response, as seen by the sidecar.',
      labelNames: ['direction'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    denied: counter(registry, {
      name: 'erpguard_authz_denied_total',
      help: 'Calls refused, by reason code (DecisionReason or sidecar code).',
      labelNames: ['direction', 'reason'] as const,
    }),
    rateLimited: counter(registry, {
      name: 'erpguard_ratelimited_total',
      help: 'Calls over their policy rate limit (refused in Enforce mode, only counted in Audit mode).',
      labelNames: ['direction'] as const,
    }),
    masked: counter(registry, {
      name: 'erpguard_masked_fields_total',
      help: 'Response fields replaced by the mask marker.',
    }),
    tokenized: counter(registry, {
      name: 'erpguard_tokenized_fields_total',
      help: 'Response fields replaced by a keyed token.',
    }),
    snapshotVersion: gauge(registry, {
      name: 'erpguard_policy_snapshot_version',
      help: 'Version of the policy snapshot in force (0: none yet).',
    }),
    certExpiry: gauge(registry, {
      name: 'erpguard_cert_expiration_timestamp_seconds',
      help: 'NotAfter of the workload certificate in use, seconds since the epoch.',
    }),
    tlsFailures: counter(registry, {
      name: 'erpguard_tls_handshake_failures_total',
      help: 'Inbound TLS handshakes refused (no client certificate, unknown CA, protocol error).',
      labelNames: ['reason'] as const,
    }),
    auditDropped: counter(registry, {
      name: 'erpguard_audit_refused_calls_total',
      help: 'Calls refused because the audit sink failed or its queue was full.',
    }),
    auditQueue: gauge(registry, {
      name: 'erpguard_audit_queue_length',
      help: 'Audit records waiting to be written.',
    }),
    countRequest(direction, decision, source, destination) {
      const key = `${direction}\u0000${decision}\u0000${source}\u0000${destination}`;
      let child = cache.get(key);
      if (child === undefined) {
        child = requests.labels({ direction, decision, destination, source });
        if (cache.size < 10_000) cache.set(key, child);
      }
      child.inc();
    },
  };
}
