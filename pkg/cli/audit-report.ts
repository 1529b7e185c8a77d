/**
 * `erpguard audit`: what an auditor asks of a cluster, computed purely from listed objects.
 * Findings have stable codes (docs/reference/codes.md).
 */
import {
  ANNOTATION_INTEGRATIONS,
  CONDITION_VERIFIED,
  LABEL_ENFORCE,
  LABEL_MODULE,
} from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { findCondition } from '../conditions/conditions.js';
import { policyKey } from '../policy/collect.js';
import { lintPolicy, LintCode } from '../policy/lint.js';
import type { ClusterWorkload } from './cluster-api.js';

export const AuditCode = {
  /** A workload in an enforced namespace declares an integration without a Verified policy. */
  IntegrationWithoutVerifiedPolicy: 'IntegrationWithoutVerifiedPolicy',
  /** A workload in an enforced namespace names no module. */
  WorkloadWithoutModule: 'WorkloadWithoutModule',
  /** A verified policy's validUntil falls within the look-ahead window. */
  ApprovalExpiringSoon: 'ApprovalExpiringSoon',
  /** A policy has no Verified condition from the controller yet (or a stale one). */
  PolicyNotReconciled: 'PolicyNotReconciled',
  /** A rule is broader than least privilege (a lint finding on breadth). */
  OverBroadRule: 'OverBroadRule',
} as const;
export type AuditCode = (typeof AuditCode)[keyof typeof AuditCode];

export interface AuditFinding {
  severity: 'error' | 'warning';
  code: AuditCode;
  object: string;
  message: string;
}

const BREADTH: ReadonlySet<string> = new Set([
  LintCode.AllMethodsAllPaths,
  LintCode.WildcardWholeApi,
  LintCode.BroadWildcard,
  LintCode.AllMethods,
  LintCode.AllGrpcMethods,
]);

export interface AuditInput {
  policies: readonly ErpIntegrationPolicy[];
  workloads: readonly ClusterWorkload[];
  namespaces: readonly { name: string; labels: Record<string, string> }[];
  now: Date;
  expiringWithinMs: number;
}

function isVerified(policy: ErpIntegrationPolicy): boolean {
  const condition = findCondition(policy.status?.conditions, CONDITION_VERIFIED);
  const fresh =
    condition?.observedGeneration === undefined ||
    policy.metadata.generation === undefined ||
    condition.observedGeneration >= policy.metadata.generation;
  return condition?.status === 'True' && fresh;
}

/** Workloads owned by another workload (ReplicaSets of Deployments, Pods of ReplicaSets) are judged through their owner. */
const isTopLevel = (w: ClusterWorkload): boolean =>
  !(w.metadata.ownerReferences ?? []).some((o) => o.controller === true);

export function auditCluster(input: AuditInput): AuditFinding[] {
  const findings: AuditFinding[] = [];
  const enforced = new Set(
    input.namespaces
      .filter((n) => n.labels[LABEL_ENFORCE] === 'true' || n.labels[LABEL_ENFORCE] === 'audit')
      .map((n) => n.name),
  );
  const verified = input.policies.filter(isVerified);

  for (const w of input.workloads.filter(isTopLevel)) {
    const namespace = w.metadata.namespace ?? 'default';
    if (!enforced.has(namespace)) continue;
    const object = `${w.kind}/${namespace}/${w.metadata.name}`;
    const module = w.template.labels[LABEL_MODULE] ?? w.metadata.labels?.[LABEL_MODULE];
    if (module === undefined) {
      findings.push({
        severity: 'error',
        code: AuditCode.WorkloadWithoutModule,
        object,
        message: `no ${LABEL_MODULE} label: the gate would refuse it`,
      });
      continue;
    }
    const declared = (
      w.template.annotations[ANNOTATION_INTEGRATIONS] ??
      w.metadata.annotations?.[ANNOTATION_INTEGRATIONS] ??
      ''
    )
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const destination of declared) {
      const covered = verified.some(
        (p) =>
          p.spec.source.module === module &&
          p.spec.destination.module === destination &&
          (p.spec.source.namespace ?? p.metadata.namespace) === namespace,
      );
      if (!covered) {
        findings.push({
          severity: 'error',
          code: AuditCode.IntegrationWithoutVerifiedPolicy,
          object,
          message: `module ${module} declares integration ${destination}, but no Verified policy covers ${module} -> ${destination}`,
        });
      }
    }
  }

  for (const policy of input.policies) {
    const object = `ErpIntegrationPolicy/${policyKey(policy)}`;
    const condition = findCondition(policy.status?.conditions, CONDITION_VERIFIED);
    if (
      !condition ||
      (condition.observedGeneration !== undefined &&
        policy.metadata.generation !== undefined &&
        condition.observedGeneration < policy.metadata.generation)
    ) {
      findings.push({
        severity: 'warning',
        code: AuditCode.PolicyNotReconciled,
        object,
        message: 'no current Verified condition: is the erpguard controller running?',
      });
    }
    const until = policy.spec.validUntil === undefined ? NaN : Date.parse(policy.spec.validUntil);
    const left = until - input.now.getTime();
    if (isVerified(policy) && left > 0 && left <= input.expiringWithinMs) {
      findings.push({
        severity: 'warning',
        code: AuditCode.ApprovalExpiringSoon,
        object,
        message: `validUntil ${policy.spec.validUntil ?? ''} is in ${Math.ceil(left / 86_400_000)} day(s): review and re-approve`,
      });
    }
    for (const f of lintPolicy(policy, { now: input.now })) {
      if (BREADTH.has(f.code)) {
        findings.push({
          severity: f.severity,
          code: AuditCode.OverBroadRule,
          object,
          message: `${f.code} at ${f.field}: ${f.message}`,
        });
      }
    }
  }
  return findings.sort((a, b) =>
    a.severity === b.severity ? a.object.localeCompare(b.object) : a.severity === 'error' ? -1 : 1,
  );
}
