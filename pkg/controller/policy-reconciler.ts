/**
 * Reconciles one ErpIntegrationPolicy, as a recipe:
 *
 *   read from the cache → verifyPolicy → update the verified set (every replica) → dependents →
 *   desiredStatus → if it differs: server-side apply (leader only) → Event if Verified flipped →
 *   requeue when validUntil passes.
 *
 * The decisions are the pure functions of pkg/policy and pkg/reconcile; this file only does the
 * I/O around them. Two details keep writes exact:
 *
 * - After a write, the informer may not have delivered the new object yet. The written status
 *   is remembered together with the resourceVersion it was computed from; while the cache still
 *   shows that version, the remembered status stands in for the cached one, so a second run does
 *   not write again or emit the same Event twice.
 * - Non-leaders compute everything (they serve sidecars from the verified set) but write
 *   nothing; each skipped write is counted.
 */
import { API_VERSION, KIND } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy, ErpIntegrationPolicyStatus } from '../api/v1alpha1/index.js';
import { nextTimeBasedChange, verifyPolicy } from '../policy/verify.js';
import type { ReviewerConfig } from '../policy/verify.js';
import { desiredStatus, statusEquals, verifiedTransition } from '../reconcile/policy-status.js';
import type { Logger } from '../telemetry/logger.js';

import type { ControllerMetrics } from './metrics.js';
import type { EventSink, LeaderGate, PolicyStore, StatusWriter } from './ports.js';
import type { VerifiedSet } from './verified-set.js';
import type { WorkloadIndex } from './workload-index.js';
import type { ReconcileResult } from './work-queue.js';

/** Requeue a little after validUntil, and at least once a day (timers beyond that are pointless). */
const EXPIRY_MARGIN_MS = 50;
const MAX_REQUEUE_MS = 24 * 3_600_000;

export interface PolicyReconcilerDeps {
  policies: PolicyStore;
  status: StatusWriter;
  events: EventSink;
  leader: LeaderGate;
  verified: VerifiedSet;
  workloads: WorkloadIndex;
  reviewers: ReviewerConfig;
  metrics: ControllerMetrics;
  logger: Logger;
  now: () => Date;
}

interface Written {
  uid: string | undefined;
  /** The resourceVersion the write was computed from. */
  baseResourceVersion: string | undefined;
  status: ErpIntegrationPolicyStatus;
}

export function policyKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function parsePolicyKey(key: string): { namespace: string; name: string } | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0 || slash === key.length - 1) return undefined;
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export class PolicyReconciler {
  private readonly written = new Map<string, Written>();

  constructor(private readonly deps: PolicyReconcilerDeps) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const ref = parsePolicyKey(key);
    if (ref === undefined) return {};
    const { deps } = this;
    const policy = deps.policies.get(ref.name, ref.namespace);
    if (policy === undefined || policy.metadata.deletionTimestamp !== undefined) {
      this.written.delete(key);
      if (deps.verified.set(key, undefined)) await deps.verified.flush();
      return {};
    }
    const now = deps.now();
    const verification = verifyPolicy(policy, deps.reviewers, now);
    deps.verified.set(key, verification.verified ? policy : undefined, verification.specHash);
    await deps.verified.flush();
    const published =
      verification.verified && deps.verified.isPublished(key, policy, verification.specHash);

    const current = this.currentStatus(key, policy);
    const src = policy.spec?.source;
    const { dependents, truncated } = deps.workloads.dependentsOf(
      src?.namespace ?? ref.namespace,
      src?.module ?? '',
      policy.spec?.destination?.module ?? '',
    );
    if (truncated)
      deps.logger.warn('dependents truncated', { policy: key, kept: dependents.length });
    const desired = desiredStatus({
      policy: { ...policy, ...(current !== undefined ? { status: current } : {}) },
      verification,
      published,
      ...(dependents.length > 0 ? { dependents } : {}),
      now,
    });

    if (!statusEquals(current, desired)) await this.write(key, policy, current, desired);
    return this.requeue(policy, now);
  }

  /** The status to compare against: the cache's, unless our own newer write has not arrived. */
  private currentStatus(
    key: string,
    policy: ErpIntegrationPolicy,
  ): ErpIntegrationPolicyStatus | undefined {
    const mine = this.written.get(key);
    if (mine === undefined) return policy.status;
    if (
      mine.uid === policy.metadata.uid &&
      mine.baseResourceVersion === policy.metadata.resourceVersion
    ) {
      return mine.status;
    }
    this.written.delete(key); // the cache has moved on: trust it again
    return policy.status;
  }

  private async write(
    key: string,
    policy: ErpIntegrationPolicy,
    before: ErpIntegrationPolicyStatus | undefined,
    desired: ErpIntegrationPolicyStatus,
  ): Promise<void> {
    const { deps } = this;
    const transition = verifiedTransition(before, desired);
    if (!deps.leader.isLeader()) {
      deps.metrics.writesSkipped.inc({ kind: 'status' });
      if (transition !== undefined) deps.metrics.writesSkipped.inc({ kind: 'event' });
      return;
    }
    const result = await deps.status.applyStatus(policy, desired);
    if (!result.applied) return; // deleted meanwhile
    deps.metrics.statusWrites.inc();
    this.written.set(key, {
      uid: policy.metadata.uid,
      baseResourceVersion: policy.metadata.resourceVersion,
      status: desired,
    });
    deps.logger.info('policy status written', {
      policy: key,
      generation: policy.metadata.generation,
      verified: transition?.to,
    });
    if (transition === undefined) return;
    try {
      await deps.events.record(
        { apiVersion: API_VERSION, kind: KIND, metadata: policy.metadata },
        {
          type: transition.to === 'True' ? 'Normal' : 'Warning',
          reason: transition.reason,
          action: 'Verify',
          note: transition.message,
        },
      );
      deps.metrics.events.inc({ reason: transition.reason });
    } catch (error) {
      // Events are best effort: the status (the source of truth) is already written.
      deps.logger.warn('cannot record event', {
        policy: key,
        reason: transition.reason,
        err: error,
      });
    }
  }

  private requeue(policy: ErpIntegrationPolicy, now: Date): ReconcileResult {
    const next = nextTimeBasedChange(policy, now);
    if (next === undefined) return {};
    const ms = next.getTime() - now.getTime() + EXPIRY_MARGIN_MS;
    return { requeueAfterMs: Math.min(ms, MAX_REQUEUE_MS) };
  }
}
