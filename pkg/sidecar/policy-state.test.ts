import { describe, expect, it } from '@jest/globals';

import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { silentLogger } from '../telemetry/logger.js';
import { isRevoked, pemList, PolicyState } from './policy-state.js';
import type { PolicySnapshot, PolicySnapshotSource } from './types.js';

function source(initial?: PolicySnapshot): PolicySnapshotSource & { set(s: PolicySnapshot): void } {
  let value = initial;
  const listeners: ((s: PolicySnapshot) => void)[] = [];
  return {
    current: () => value,
    onChange: (l) => {
      listeners.push(l);
      return () => undefined;
    },
    set: (s) => {
      value = s;
      listeners.forEach((l) => l(s));
    },
  };
}

const POLICY: ErpIntegrationPolicy = {
  apiVersion: 'erpguard.io/v1alpha1',
  kind: 'ErpIntegrationPolicy',
  metadata: { name: 'p', namespace: 'erp' },
  spec: {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET'], paths: ['/x'] }],
  },
};

describe('PolicyState', () => {
  it('compiles each snapshot once and keeps the last good one when an update is unusable', () => {
    const src = source({ version: 1, policies: [POLICY] });
    const state = new PolicyState(src, 'finance', silentLogger());
    const first = state.current;
    expect(first?.version).toBe(1);
    expect(first?.compiled.stats.policies).toBe(1);
    src.set({ version: 2, policies: 'nope' as never });
    expect(state.current).toBe(first);
    src.set({
      version: 3,
      policies: [POLICY],
      revokedIdentities: [{ spiffeId: 'x', until: 'not a date' }],
    });
    expect(state.current).toBe(first);
    src.set({ version: 4, policies: [] });
    expect(state.current?.version).toBe(4);
  });

  it('only compiles policies of its own destination', () => {
    const other = { ...POLICY, spec: { ...POLICY.spec, destination: { module: 'wms' } } };
    const state = new PolicyState(
      source({ version: 1, policies: [POLICY, other] }),
      'finance',
      silentLogger(),
    );
    expect(state.current?.compiled.stats.policies).toBe(1);
  });

  it('applies revocations by identity, issue time and end', () => {
    const t = Date.parse('2026-06-01T00:00:00Z');
    const state = new PolicyState(
      source({
        version: 1,
        policies: [],
        revokedIdentities: [
          'spiffe://td/ns/erp/sa/all',
          { spiffeId: 'spiffe://td/ns/erp/sa/old', issuedBefore: '2026-06-01T00:00:00Z' },
          { spiffeId: 'spiffe://td/ns/erp/sa/until', until: t + 1000 },
        ],
      }),
      'finance',
      silentLogger(),
    );
    const a = state.current!;
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/all', t, t)).toBe(true);
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/old', t - 1, t)).toBe(true);
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/old', t + 1, t + 5)).toBe(false);
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/until', t, t + 999)).toBe(true);
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/until', t, t + 1000)).toBe(false);
    expect(isRevoked(a, 'spiffe://td/ns/erp/sa/other', t, t)).toBe(false);
  });
});

describe('pemList', () => {
  it('splits concatenated PEM and accepts lists', () => {
    const block = (n: string): string =>
      `-----BEGIN CERTIFICATE-----\n${n}\n-----END CERTIFICATE-----`;
    expect(pemList(`${block('A')}\n${block('B')}\n`)).toHaveLength(2);
    expect(pemList([block('A'), block('B')])).toEqual([`${block('A')}\n`, `${block('B')}\n`]);
    expect(pemList(undefined)).toEqual([]);
  });
});
