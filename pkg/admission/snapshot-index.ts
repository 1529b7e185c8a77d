/**
 * O(1) lookups over a Snapshot, built once per snapshot object, plus the namespace scope rule and
 * a per-policy verification memo.
 */
import { LABEL_ENFORCE } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { nextTimeBasedChange, verifyPolicy } from '../policy/verify.js';
import type { ReviewerConfig, VerificationResult } from '../policy/verify.js';

import { AdmissionSkip } from './codes.js';
import type {
  AdmissionConfig,
  GateMode,
  NamespaceInfo,
  ServiceAccountBinding,
  Snapshot,
} from './types.js';

/** Never in scope, whatever their labels say: locking these out can brick a cluster. */
export const SYSTEM_NAMESPACES: readonly string[] = [
  'kube-system',
  'kube-public',
  'kube-node-lease',
];

export interface SnapshotIndex {
  namespace(name: string): NamespaceInfo | undefined;
  serviceAccount(namespace: string, name: string): ServiceAccountBinding | undefined;
  /** Policies whose source is `module` in `namespace` and whose destination is `destination`. */
  policies(namespace: string, module: string, destination: string): readonly ErpIntegrationPolicy[];
}

const indexes = new WeakMap<Snapshot, SnapshotIndex>();

function key(...parts: string[]): string {
  return parts.join('\u0000');
}

export function indexSnapshot(snapshot: Snapshot): SnapshotIndex {
  const cached = indexes.get(snapshot);
  if (cached !== undefined) return cached;
  const namespaces = new Map<string, NamespaceInfo>();
  for (const ns of snapshot.namespaces) namespaces.set(ns.name, ns);
  const sas = new Map<string, ServiceAccountBinding>();
  for (const sa of snapshot.serviceAccounts) sas.set(key(sa.namespace, sa.name), sa);
  const policies = new Map<string, ErpIntegrationPolicy[]>();
  for (const p of snapshot.policies) {
    // The cache holds whatever is stored; a malformed object simply covers nothing.
    const src = p.spec?.source?.module;
    const dst = p.spec?.destination?.module;
    const ns = p.spec?.source?.namespace ?? p.metadata?.namespace;
    if (typeof src !== 'string' || typeof dst !== 'string' || typeof ns !== 'string') continue;
    // Policies stored in system namespaces never count (nobody reviews what lives there).
    if (SYSTEM_NAMESPACES.includes(p.metadata?.namespace ?? '')) continue;
    const k = key(ns, src, dst);
    const list = policies.get(k);
    if (list === undefined) policies.set(k, [p]);
    else list.push(p);
  }
  const index: SnapshotIndex = {
    namespace: (name) => namespaces.get(name),
    serviceAccount: (namespace, name) => sas.get(key(namespace, name)),
    policies: (namespace, module, destination) =>
      policies.get(key(namespace, module, destination)) ?? [],
  };
  indexes.set(snapshot, index);
  return index;
}

export type Scope = { inScope: true; mode: GateMode } | { inScope: false; skip: AdmissionSkip };

/**
 * The namespace rule: system namespaces and our own are never in scope; otherwise the label
 * `erpguard.io/enforce` decides: `"true"` → Enforce, `"audit"` → Audit, anything else → out.
 */
export function namespaceScope(
  namespace: string | undefined,
  index: SnapshotIndex,
  config: AdmissionConfig,
): Scope {
  if (namespace === undefined || namespace === '') {
    return { inScope: false, skip: AdmissionSkip.NamespaceNotEnforced };
  }
  if (SYSTEM_NAMESPACES.includes(namespace) || namespace === config.ownNamespace) {
    return { inScope: false, skip: AdmissionSkip.NamespaceExempt };
  }
  const ns = index.namespace(namespace);
  if (ns === undefined) {
    return (config.unknownNamespace ?? 'enforce') === 'enforce'
      ? { inScope: true, mode: 'Enforce' }
      : { inScope: false, skip: AdmissionSkip.NamespaceNotEnforced };
  }
  const value = ns.labels[LABEL_ENFORCE];
  if (value === 'true') return { inScope: true, mode: 'Enforce' };
  if (value === 'audit') return { inScope: true, mode: 'Audit' };
  return { inScope: false, skip: AdmissionSkip.NamespaceNotEnforced };
}

interface Memo {
  reviewers: ReviewerConfig;
  computedAt: number;
  reuseUntil: number;
  result: VerificationResult;
}
const verifications = new WeakMap<ErpIntegrationPolicy, Memo>();

/** Longest a memoised verification is reused without a time-based reason to recompute. */
export const VERIFICATION_REFRESH_MS = 60_000;

/**
 * verifyPolicy, memoised per policy object (an informer replaces the object on every change, so
 * a new version is never served from the memo). A result is reused until the next time-based
 * change of the answer (validUntil: Verified → Expired, exact) and for at most 60 s. The only
 * other time dependence, a validUntil too far ahead coming into the allowed window, turns a
 * failure into a pass: a stale memo there fails closed for up to a minute. Verification hashes
 * and lints the spec (≈0.5 ms); doing it per request would dominate admission latency.
 */
export function verifyCached(
  policy: ErpIntegrationPolicy,
  reviewers: ReviewerConfig,
  now: Date,
): VerificationResult {
  const t = now.getTime();
  const memo = verifications.get(policy);
  if (
    memo !== undefined &&
    memo.reviewers === reviewers &&
    t >= memo.computedAt &&
    t < memo.reuseUntil
  ) {
    return memo.result;
  }
  const result = verifyPolicy(policy, reviewers, now);
  let next = Number.POSITIVE_INFINITY;
  try {
    next = nextTimeBasedChange(policy, now)?.getTime() ?? next;
  } catch {
    next = t + 1000; // a malformed object: cheap to re-check, never worth caching long
  }
  verifications.set(policy, {
    reviewers,
    computedAt: t,
    reuseUntil: Math.min(next, t + VERIFICATION_REFRESH_MS),
    result,
  });
  return result;
}
