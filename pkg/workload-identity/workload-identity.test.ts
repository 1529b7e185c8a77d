import { describe, expect, it } from '@jest/globals';

import { API_VERSION, KIND } from '../api/v1alpha1/index.js';
import type { PolicySnapshotMessage } from '../proto/erpguard-proto.js';
import { Backoff } from './backoff.js';
import { parseSnapshot } from './policy-watch-client.js';

describe('Backoff', () => {
  it('doubles up to the cap, with jitter between half and all of each step', () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
    const high = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.999999);
    expect([1, 2, 3, 4, 5, 6].map(() => low.next())).toEqual([50, 100, 200, 400, 500, 500]);
    expect([1, 2, 3, 4, 5, 6].map(() => high.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    low.reset();
    expect(low.next()).toBe(50);
  });
});

const policyJson = (destination: string): string =>
  JSON.stringify({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: 'p', namespace: 'erp' },
    spec: { source: { module: 'crm' }, destination: { module: destination }, rules: [] },
  });

function message(overrides: Partial<PolicySnapshotMessage> = {}): PolicySnapshotMessage {
  return {
    version: 3,
    namespace: 'erp',
    module: 'finance',
    policies: [policyJson('finance')],
    revokedIdentities: [
      {
        spiffeId: 'spiffe://cluster.local/ns/erp/sa/bi',
        untilUnixMs: 1_900_000_000_000,
        reason: 'r',
      },
    ],
    trustBundle: '',
    identityBindings: [{ spiffeId: 'spiffe://cluster.local/ns/erp/sa/crm', module: 'crm' }],
    certificateTtlSeconds: 0,
    ...overrides,
  };
}

describe('parseSnapshot', () => {
  it('turns a wire snapshot into a view', () => {
    const view = parseSnapshot(message(), new Date(0));
    expect(view.policies[0]?.spec.destination.module).toBe('finance');
    expect(view.revokedIdentities[0]?.until).toEqual(new Date(1_900_000_000_000));
    expect(view.identityBindings.get('spiffe://cluster.local/ns/erp/sa/crm')).toBe('crm');
    expect(view.certificateTtlSeconds).toBeNull();
  });

  it.each<[string, Partial<PolicySnapshotMessage>, string]>([
    ['a policy for another module', { policies: [policyJson('wms')] }, 'is for module wms'],
    ['a policy that is not JSON', { policies: ['{'] }, 'JSON'],
    [
      'something that is not a policy',
      { policies: ['{"kind":"Pod"}'] },
      'is not an ErpIntegrationPolicy',
    ],
    ['no module', { module: '' }, 'names no module'],
    ['a broken trust bundle', { trustBundle: 'garbage' }, 'outside PEM'],
  ])('refuses %s', (_name, overrides, message_) => {
    expect(() => parseSnapshot(message(overrides), new Date(0))).toThrow(message_);
  });
});
