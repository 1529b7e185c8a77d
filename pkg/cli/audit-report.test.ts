import { describe, expect, it } from '@jest/globals';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { buildPolicy, withModules, withRules, withSpec } from '../../test/builders/policy.js';
import { auditCluster } from './audit-report.js';
import type { ClusterWorkload } from './cluster-api.js';

const now = new Date('2027-06-10T00:00:00Z');
const verified = (
  p: ErpIntegrationPolicy,
  status: 'True' | 'False' = 'True',
): ErpIntegrationPolicy => {
  p.metadata.generation = 2;
  p.status = {
    conditions: [
      {
        type: 'Verified',
        status,
        reason: status === 'True' ? 'Approved' : 'NotApproved',
        message: '',
        observedGeneration: 2,
        lastTransitionTime: '2026-01-01T00:00:00Z',
      },
    ],
  };
  return p;
};
const workload = (
  name: string,
  labels: Record<string, string>,
  annotations: Record<string, string> = {},
  namespace = 'erp',
): ClusterWorkload => ({
  kind: 'Deployment',
  metadata: { name, namespace },
  template: { labels, annotations },
});
const namespaces = [
  { name: 'erp', labels: { 'erpguard.io/enforce': 'true' } },
  { name: 'sandbox', labels: {} },
];

describe('auditCluster', () => {
  it('finds integrations without a verified policy and workloads without a module, only in enforced namespaces', () => {
    const findings = auditCluster({
      policies: [
        verified(buildPolicy()),
        verified(buildPolicy(withModules('wms', 'finance')), 'False'),
      ],
      workloads: [
        workload('crm', { 'erpguard.io/module': 'crm' }, { 'erpguard.io/integrations': 'finance' }),
        workload(
          'wms',
          { 'erpguard.io/module': 'wms' },
          { 'erpguard.io/integrations': 'finance, inventory' },
        ),
        workload('batch', {}),
        workload('toy', {}, {}, 'sandbox'),
      ],
      namespaces,
      now,
      expiringWithinMs: 30 * 86_400_000,
    });
    expect(
      findings.filter((f) => f.severity === 'error').map((f) => `${f.code} ${f.object}`),
    ).toEqual([
      'WorkloadWithoutModule Deployment/erp/batch',
      'IntegrationWithoutVerifiedPolicy Deployment/erp/wms',
      'IntegrationWithoutVerifiedPolicy Deployment/erp/wms',
    ]);
    expect(findings.find((f) => f.object === 'Deployment/erp/wms')?.message).toContain(
      'wms -> finance',
    );
  });

  it('warns about approvals expiring within the window, over-broad rules and unreconciled policies', () => {
    const broad = buildPolicy(withRules({ methods: ['*'], paths: ['/api/v1/customers'] }));
    broad.metadata.name = 'broad';
    const unreconciled = buildPolicy(withSpec({ validUntil: '2028-01-01T00:00:00Z' }));
    unreconciled.metadata.name = 'new';
    const findings = auditCluster({
      policies: [verified(buildPolicy()), verified(broad), unreconciled],
      workloads: [],
      namespaces,
      now,
      expiringWithinMs: 30 * 86_400_000,
    });
    expect(findings.map((f) => `${f.severity} ${f.code} ${f.object}`).sort()).toEqual([
      'warning ApprovalExpiringSoon ErpIntegrationPolicy/erp/broad',
      'warning ApprovalExpiringSoon ErpIntegrationPolicy/erp/crm-reads-customers',
      'warning OverBroadRule ErpIntegrationPolicy/erp/broad',
      'warning PolicyNotReconciled ErpIntegrationPolicy/erp/new',
    ]);
    expect(findings.find((f) => f.code === 'ApprovalExpiringSoon')?.message).toMatch(
      /in 20 day\(s\)/,
    );
  });
});
