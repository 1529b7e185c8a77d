import { describe, expect, it } from '@jest/globals';
import { dump, load } from 'js-yaml';
import { buildPolicy, withSpec } from '../../test/builders/policy.js';
import { canonicalJson, canonicalSpec, specHash } from './hash.js';
import type { ErpIntegrationPolicySpec } from '../api/v1alpha1/index.js';

const base = buildPolicy().spec;

/** Rebuilds an object with its keys in reverse order, recursively. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .reverse()
        .map(([k, v]) => [k, reverseKeys(v)]),
    );
  }
  return value;
}

describe('specHash', () => {
  it('has the documented format', () => {
    expect(specHash(base)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('matches a hash computed by hand from the documented algorithm', async () => {
    const { createHash } = await import('node:crypto');
    const spec: ErpIntegrationPolicySpec = {
      source: { module: 'b' },
      destination: { module: 'a' },
      rules: [{ methods: ['GET'], paths: ['/x'] }],
    };
    const expected =
      '{"certificateTTL":"3600s","destination":{"module":"a"},"mode":"Enforce","rules":[{"methods":["GET"],"paths":["/x"]}],"source":{"module":"b"}}';
    expect(canonicalJson(canonicalSpec(spec))).toBe(expected);
    expect(specHash(spec)).toBe(`sha256:${createHash('sha256').update(expected).digest('hex')}`);
  });

  const equivalent: { name: string; spec: unknown; reference?: ErpIntegrationPolicySpec }[] = [
    { name: 'keys in another order', spec: reverseKeys(base) },
    { name: 'a YAML round trip in flow style', spec: load(dump(base, { flowLevel: 1 })) },
    { name: 'mode defaulted', spec: { ...base, mode: undefined } },
    { name: 'certificateTTL defaulted', spec: { ...base, certificateTTL: undefined } },
    { name: 'certificateTTL as 60m', spec: { ...base, certificateTTL: '60m' } },
    {
      name: 'burst defaulted to rate',
      spec: { ...base, rateLimit: { requestsPerSecond: 50 } },
      reference: { ...base, rateLimit: { requestsPerSecond: 50, burst: 50 } },
    },
    {
      name: 'validUntil with an offset',
      spec: { ...base, validUntil: '2027-06-30T02:00:00+02:00' },
    },
    {
      name: 'methods reordered',
      spec: {
        ...base,
        rules: [
          { methods: ['GET'], paths: ['/api/v1/customers/{id}', '/api/v1/customers'] },
          base.rules[1],
        ],
      },
    },
    {
      name: 'quoted selector spelling',
      spec: {
        ...base,
        dataProtection: { mask: ["$['items'][*]['iban']"], tokenize: ['$.items[*].email'] },
      },
    },
    { name: 'empty description', spec: { ...base, description: '' } },
  ];

  it.each(equivalent)('is unchanged by $name', ({ spec, reference }) => {
    expect(specHash(spec as ErpIntegrationPolicySpec)).toBe(specHash(reference ?? base));
  });

  const different: { name: string; spec: ErpIntegrationPolicySpec }[] = [
    {
      name: 'another method',
      spec: buildPolicy(withSpec({ rules: [{ methods: ['POST'], paths: ['/api/v1/customers'] }] }))
        .spec,
    },
    { name: 'mode Audit', spec: { ...base, mode: 'Audit' } },
    { name: 'a higher rate', spec: { ...base, rateLimit: { requestsPerSecond: 51, burst: 100 } } },
    { name: 'a new validUntil', spec: { ...base, validUntil: '2027-07-01T00:00:00Z' } },
    {
      name: 'a removed mask',
      spec: { ...base, dataProtection: { tokenize: ['$.items[*].email'] } },
    },
    { name: 'rules reordered', spec: { ...base, rules: [base.rules[1]!, base.rules[0]!] } },
    { name: 'a description', spec: { ...base, description: 'now documented' } },
  ];

  it.each(different)('changes with $name', ({ spec }) => {
    expect(specHash(spec)).not.toBe(specHash(base));
  });
});
