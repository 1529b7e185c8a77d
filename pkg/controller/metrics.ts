/**
 * The controller's Prometheus metrics, registered on a registry passed in (never the global one).
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { counter, gauge, histogram } from '../telemetry/metrics.js';

export interface ControllerMetrics {
  /** Reconcile runs by result: success, error (retried) or terminal (dropped). */
  reconcileTotal: Counter<'result'>;
  reconcileDuration: Histogram;
  /** Keys waiting in the work queue. */
  workqueueDepth: Gauge;
  /** 1 while this replica holds the Lease. */
  leader: Gauge;
  /** Writes a non-leader computed but did not make (kind: status, event, networkpolicy). */
  writesSkipped: Counter<'kind'>;
  statusWrites: Counter;
  events: Counter<'reason'>;
  networkPolicyWrites: Counter<'op'>;
  informerRestarts: Counter<'informer'>;
  verifiedPolicies: Gauge;
}

export function createControllerMetrics(registry: Registry): ControllerMetrics {
  return {
    reconcileTotal: counter(registry, {
      name: 'erpguard_reconcile_total',
      help: 'Reconcile runs by result (success, error = retried, terminal = dropped)',
      labelNames: ['result'],
    }),
    reconcileDuration: histogram(registry, {
      name: 'erpguard_reconcile_duration_seconds',
      help: 'Duration of one reconcile run',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    workqueueDepth: gauge(registry, {
      name: 'erpguard_workqueue_depth',
      help: 'Keys waiting in the controller work queue',
    }),
    leader: gauge(registry, {
      name: 'erpguard_leader',
      help: '1 while this replica holds the leader Lease, else 0',
    }),
    writesSkipped: counter(registry, {
      name: 'erpguard_leader_writes_skipped_total',
      help: 'Writes computed but not made because this replica is not the leader',
      labelNames: ['kind'],
    }),
    statusWrites: counter(registry, {
      name: 'erpguard_status_writes_total',
      help: 'Policy status server-side applies',
    }),
    events: counter(registry, {
      name: 'erpguard_events_total',
      help: 'Kubernetes Events emitted on Verified transitions, by reason',
      labelNames: ['reason'],
    }),
    networkPolicyWrites: counter(registry, {
      name: 'erpguard_networkpolicy_writes_total',
      help: 'NetworkPolicy writes by operation (apply, delete)',
      labelNames: ['op'],
    }),
    informerRestarts: counter(registry, {
      name: 'erpguard_informer_restarts_total',
      help: 'Informer restarts after a list or watch error',
      labelNames: ['informer'],
    }),
    verifiedPolicies: gauge(registry, {
      name: 'erpguard_verified_policies',
      help: 'Policies currently verified (what sidecars enforce)',
    }),
  };
}
