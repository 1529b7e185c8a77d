import { readFileSync } from 'node:fs';

import { describe, expect, it } from '@jest/globals';

import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { specHash } from '../policy/hash.js';

import { indexSnapshot, namespaceScope, verifyCached } from './snapshot-index.js';
import type { AdmissionConfig, Snapshot } from './types.js';

const FIXTURES = new URL('../../test/fixtures/admission/', import.meta.url);
const snapshot = JSON.parse(readFileSync(new URL('snapshot.json', FIXTURES), 'utf8')) as Snapshot;
const config: AdmissionConfig = {
  reviewers: { groups: ['erp-reviewers'] },
  ownNamespace: 'erpguard-system',
  sidecar: { image: 'proxy:1' },
  trustDomain: 'cluster.local',
  controllerAddress: 'c:1',
  now: new Date('2026-09-01T00:00:00Z'),
};

describe('namespaceScope', () => {
  const index = indexSnapshot(snapshot);
  it.each([
    ['erp', { inScope: true, mode: 'Enforce' }],
    ['erp-audit', { inScope: true, mode: 'Audit' }],
    ['sandbox', { inScope: false, skip: 'NamespaceNotEnforced' }],
    ['kube-system', { inScope: false, skip: 'NamespaceExempt' }],
    ['kube-public', { inScope: false, skip: 'NamespaceExempt' }],
    ['kube-node-lease', { inScope: false, skip: 'NamespaceExempt' }],
    ['erpguard-system', { inScope: false, skip: 'NamespaceExempt' }],
    ['not-cached-yet', { inScope: true, mode: 'Enforce' }],
    ['', { inScope: false, skip: 'NamespaceNotEnforced' }],
  ])('%s', (ns, want) => {
    expect(namespaceScope(ns, index, config)).toEqual(want);
  });

  it('treats label values other than "true" and "audit" as not enforced', () => {
    const snap: Snapshot = {
      ...snapshot,
      namespaces: [{ name: 'x', labels: { 'erpguard.io/enforce': 'True' } }],
    };
    expect(namespaceScope('x', indexSnapshot(snap), config)).toEqual({
      inScope: false,
      skip: 'NamespaceNotEnforced',
    });
  });

  it('indexes once per snapshot object', () => {
    expect(indexSnapshot(snapshot)).toBe(indexSnapshot(snapshot));
  });
});

describe('verifyCached', () => {
  const base = snapshot.policies.find(
    (p) => p.metadata.name === 'crm-to-finance',
  ) as ErpIntegrationPolicy;
  const expiringAt = (until: string): ErpIntegrationPolicy => {
    const p = structuredClone(base);
    p.spec.validUntil = until;
    const approval = JSON.parse(String(p.metadata.annotations?.['erpguard.io/approval'])) as Record<
      string,
      unknown
    >;
    approval['specHash'] = specHash(p.spec);
    (p.metadata.annotations as Record<string, string>)['erpguard.io/approval'] =
      JSON.stringify(approval);
    return p;
  };

  it('never serves a verified result past validUntil', () => {
    const p = expiringAt('2026-09-01T00:00:10Z');
    const at = (s: string): string =>
      verifyCached(p, config.reviewers, new Date(s)).condition.reason;
    expect(at('2026-09-01T00:00:00Z')).toBe('Approved');
    expect(at('2026-09-01T00:00:09.999Z')).toBe('Approved');
    expect(at('2026-09-01T00:00:10Z')).toBe('Expired');
  });

  it('recomputes for a new object, other reviewers, or a clock that went back', () => {
    const p = expiringAt('2026-12-01T00:00:00Z');
    const t = new Date('2026-09-01T00:00:00Z');
    const first = verifyCached(p, config.reviewers, t);
    expect(verifyCached(p, config.reviewers, new Date(t.getTime() + 1000))).toBe(first);
    expect(verifyCached(structuredClone(p), config.reviewers, t)).not.toBe(first);
    const none = verifyCached(p, { groups: ['someone-else'] }, t);
    expect(none.condition.reason).toBe('ApproverNotReviewer');
    expect(verifyCached(p, config.reviewers, new Date(t.getTime() - 1000))).not.toBe(first);
  });
});
