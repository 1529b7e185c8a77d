import { describe, expect, it } from '@jest/globals';

import { API_VERSION, KIND, type ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { PolicyIndex, type PolicySnapshot } from './policy-index.js';

function policy(
  name: string,
  source: string,
  destination: string,
  extra: Partial<ErpIntegrationPolicy['spec']> = {},
  namespace = 'erp',
): ErpIntegrationPolicy {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      namespace,
      generation: 1,
      annotations: { 'erpguard.io/approval': '{"by":"alice"}' },
    },
    spec: {
      source: { module: source },
      destination: { module: destination },
      rules: [{ methods: ['GET'], paths: ['/x'] }],
      ...extra,
    },
    status: {
      specHash: `sha256:${name}`,
      approval: { by: 'alice', at: '2027-01-01T00:00:00Z', specHash: 'x' },
    },
  };
}

function setup(): {
  index: PolicyIndex;
  clock: { now: number };
  seen: Record<string, PolicySnapshot[]>;
} {
  const clock = { now: Date.parse('2027-01-01T00:00:00Z') };
  const index = new PolicyIndex({ clock: () => clock.now });
  const seen: Record<string, PolicySnapshot[]> = { finance: [], crm: [], wms: [] };
  for (const module of Object.keys(seen)) {
    index.subscribe('erp', module, (s) => seen[module]?.push(s));
  }
  return { index, clock, seen };
}

describe('PolicyIndex', () => {
  it('gives each module only the policies where it is the destination, without approval details', () => {
    const { index } = setup();
    index.applyPolicies([
      policy('crm-to-finance', 'crm', 'finance'),
      policy('bi-to-crm', 'bi', 'crm'),
    ]);
    const finance = index.snapshot('erp', 'finance');
    expect(finance.policies.map((p) => p.metadata.name)).toEqual(['crm-to-finance']);
    expect(finance.policies[0]?.metadata.annotations).toBeUndefined();
    expect(finance.policies[0]?.status).toEqual({ specHash: 'sha256:crm-to-finance' });
    expect(index.snapshot('erp', 'crm').policies.map((p) => p.metadata.name)).toEqual([
      'bi-to-crm',
    ]);
    expect(index.snapshot('other', 'finance').policies).toEqual([]);
  });

  it('notifies only modules whose snapshot changed, with increasing versions', () => {
    const { index, seen } = setup();
    index.applyPolicies([policy('crm-to-finance', 'crm', 'finance')]);
    expect(seen['finance']).toHaveLength(1);
    expect(seen['crm']).toHaveLength(0);
    const v1 = seen['finance']?.[0]?.version ?? 0;

    // Same set again: nothing changes, nobody hears anything.
    index.applyPolicies([policy('crm-to-finance', 'crm', 'finance')]);
    expect(seen['finance']).toHaveLength(1);

    // A policy for wms only reaches wms.
    const result = index.applyPolicies([
      policy('crm-to-finance', 'crm', 'finance'),
      policy('crm-to-wms', 'crm', 'wms'),
    ]);
    expect(result.changed).toEqual(['erp/wms']);
    expect(seen['finance']).toHaveLength(1);
    expect(seen['wms']).toHaveLength(1);
    expect(seen['wms']?.[0]?.version).toBeGreaterThan(v1);

    // Removing finance's policy reaches finance with an empty set (deny everything).
    index.applyPolicies([policy('crm-to-wms', 'crm', 'wms')]);
    expect(seen['finance']?.at(-1)?.policies).toEqual([]);
    expect(seen['finance']?.at(-1)?.version).toBeGreaterThan(seen['wms']?.[0]?.version ?? 0);
  });

  it('sends revocations and trust bundle changes to everyone, and drops ended revocations', () => {
    const { index, clock, seen } = setup();
    index.revoke(
      'spiffe://cluster.local/ns/erp/sa/crm',
      new Date(clock.now + 60_000),
      'compromised',
    );
    for (const module of ['finance', 'crm', 'wms']) {
      expect(seen[module]?.at(-1)?.revokedIdentities).toEqual([
        {
          spiffeId: 'spiffe://cluster.local/ns/erp/sa/crm',
          until: new Date(clock.now + 60_000),
          reason: 'compromised',
        },
      ]);
    }
    expect(index.revocationOf('spiffe://cluster.local/ns/erp/sa/crm')).not.toBeNull();
    index.setTrustBundle('PEM');
    expect(seen['wms']?.at(-1)?.trustBundlePem).toBe('PEM');
    expect(index.setTrustBundle('PEM')).toEqual([]);

    clock.now += 61_000;
    expect(index.revocationOf('spiffe://cluster.local/ns/erp/sa/crm')).toBeNull();
    expect(index.pruneExpired()).toBe(1);
    expect(seen['crm']?.at(-1)?.revokedIdentities).toEqual([]);
    expect(() => index.revoke('spiffe://cluster.local/ns/erp/sa/crm', new Date(clock.now))).toThrow(
      'future',
    );
  });

  it('tells revocation listeners and lifts revocations', () => {
    const { index, clock } = setup();
    const heard: string[] = [];
    index.onRevoke((r) => heard.push(r.spiffeId));
    index.revoke('spiffe://cluster.local/ns/erp/sa/bi', new Date(clock.now + 1000));
    expect(heard).toEqual(['spiffe://cluster.local/ns/erp/sa/bi']);
    expect(index.unrevoke('spiffe://cluster.local/ns/erp/sa/bi')).toBe(true);
    expect(index.unrevoke('spiffe://cluster.local/ns/erp/sa/bi')).toBe(false);
    expect(index.revocations()).toEqual([]);
  });

  it('binds identities only of the modules that the policies let in', () => {
    const { index } = setup();
    index.setIdentityBindings([
      { namespace: 'erp', serviceAccount: 'crm-sa', module: 'crm' },
      { namespace: 'erp', serviceAccount: 'bi-sa', module: 'bi' },
      { namespace: 'sales', serviceAccount: 'crm-sa', module: 'crm' },
    ]);
    index.applyPolicies([policy('crm-to-finance', 'crm', 'finance')]);
    expect(index.snapshot('erp', 'finance').identityBindings).toEqual([
      { spiffeId: 'spiffe://cluster.local/ns/erp/sa/crm-sa', module: 'crm' },
    ]);
    index.applyPolicies([
      policy('crm-to-finance', 'crm', 'finance', { source: { module: 'crm', namespace: 'sales' } }),
    ]);
    expect(index.snapshot('erp', 'finance').identityBindings).toEqual([
      { spiffeId: 'spiffe://cluster.local/ns/sales/sa/crm-sa', module: 'crm' },
    ]);
    expect(index.moduleOf('erp', 'bi-sa')).toBe('bi');
    expect(index.moduleOf('erp', 'nobody')).toBeNull();
  });

  it('takes the smallest certificateTTL of the policies naming a module on either side', () => {
    const { index } = setup();
    index.applyPolicies([
      policy('a', 'crm', 'finance', { certificateTTL: '2h' }),
      policy('b', 'bi', 'finance', { certificateTTL: '45m' }),
      policy('c', 'finance', 'wms', { certificateTTL: '30m' }),
      policy('d', 'crm', 'wms', { certificateTTL: 'bogus' }),
    ]);
    expect(index.certificateTtlFor('erp', 'finance')).toBe(1800);
    expect(index.certificateTtlFor('erp', 'crm')).toBe(7200);
    expect(index.certificateTtlFor('erp', 'wms')).toBe(1800);
    expect(index.certificateTtlFor('erp', 'nobody')).toBeNull();
    expect(index.snapshot('erp', 'finance').certificateTtlSeconds).toBe(1800);
  });

  it('skips policies it cannot place and keeps serving the others', () => {
    const { index } = setup();
    const broken = policy('x', 'crm', 'finance');
    delete broken.metadata.namespace;
    const result = index.applyPolicies([
      broken,
      policy('ok', 'crm', 'finance'),
      policy('ok', 'crm', 'finance'),
    ]);
    expect(result.accepted).toBe(1);
    expect(result.skipped.map((s) => s.reason)).toEqual([
      'metadata.namespace is missing',
      'duplicate policy',
    ]);
  });

  it('isolates a throwing listener and stops notifying after unsubscribe', () => {
    const index = new PolicyIndex();
    const heard: number[] = [];
    index.subscribe('erp', 'finance', () => {
      throw new Error('listener bug');
    });
    const off = index.subscribe('erp', 'finance', (s) => heard.push(s.version));
    index.applyPolicies([policy('a', 'crm', 'finance')]);
    expect(heard).toHaveLength(1);
    off();
    index.applyPolicies([]);
    expect(heard).toHaveLength(1);
    expect(index.subscriberCount()).toBe(1);
  });
});
