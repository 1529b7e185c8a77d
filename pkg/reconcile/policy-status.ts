/**
 * The status a policy should have, computed purely from the policy, its verification and what
 * was published. The controller writes it with server-side apply only when it differs
 * semantically from the current status, so repeated reconciles write nothing.
 */
import { CONDITION_READY, CONDITION_VERIFIED, ReadyReason } from '../api/v1alpha1/index.js';
import type {
  DependentWorkload,
  ErpIntegrationPolicy,
  ErpIntegrationPolicyStatus,
} from '../api/v1alpha1/index.js';
import { findCondition, setCondition } from '../conditions/conditions.js';
import type { VerificationResult } from '../policy/verify.js';

export interface StatusInput {
  policy: ErpIntegrationPolicy;
  verification: VerificationResult;
  /** Whether the policy index (what sidecars receive) holds this exact spec. */
  published: boolean;
  dependents?: DependentWorkload[];
  now: Date;
}

export function desiredStatus(input: StatusInput): ErpIntegrationPolicyStatus {
  const { policy, verification, published, now } = input;
  const generation = policy.metadata.generation;
  const current = policy.status?.conditions;
  let conditions = setCondition(current, verification.condition, generation, now);
  const ready = !verification.verified
    ? {
        status: 'False' as const,
        reason: ReadyReason.NotVerified,
        message: `not enforced: ${verification.condition.reason}`,
      }
    : published
      ? {
          status: 'True' as const,
          reason: ReadyReason.Ready,
          message: 'published to the sidecars of the destination module',
        }
      : {
          status: 'False' as const,
          reason: ReadyReason.Pending,
          message: 'verified; waiting to be published to sidecars',
        };
  conditions = setCondition(conditions, { type: CONDITION_READY, ...ready }, generation, now);
  return {
    ...(generation === undefined ? {} : { observedGeneration: generation }),
    ...(verification.specHash ? { specHash: verification.specHash } : {}),
    ...(verification.approval ? { approval: verification.approval } : {}),
    conditions,
    ...(input.dependents ? { dependents: input.dependents } : {}),
  };
}

/** Semantic equality for deciding whether a status write is needed. */
export function statusEquals(
  a: ErpIntegrationPolicyStatus | undefined,
  b: ErpIntegrationPolicyStatus,
): boolean {
  return JSON.stringify(normalise(a)) === JSON.stringify(normalise(b));
}

function normalise(status: ErpIntegrationPolicyStatus | undefined): unknown {
  if (!status) return {};
  return {
    observedGeneration: status.observedGeneration,
    specHash: status.specHash,
    approval: status.approval && {
      by: status.approval.by,
      at: status.approval.at,
      specHash: status.approval.specHash,
      groups: status.approval.groups,
    },
    conditions: [...(status.conditions ?? [])]
      .sort((x, y) => x.type.localeCompare(y.type))
      .map((c) => ({
        type: c.type,
        status: c.status,
        reason: c.reason,
        message: c.message,
        observedGeneration: c.observedGeneration,
        lastTransitionTime: c.lastTransitionTime,
      })),
    dependents: status.dependents,
  };
}

/** The Verified condition flipped between two statuses (for Events on transitions only). */
export function verifiedTransition(
  before: ErpIntegrationPolicyStatus | undefined,
  after: ErpIntegrationPolicyStatus,
): { from: string | undefined; to: string; reason: string; message: string } | undefined {
  const old = findCondition(before?.conditions, CONDITION_VERIFIED);
  const next = findCondition(after.conditions, CONDITION_VERIFIED);
  if (!next || (old && old.status === next.status && old.reason === next.reason)) return undefined;
  return { from: old?.status, to: next.status, reason: next.reason, message: next.message };
}
