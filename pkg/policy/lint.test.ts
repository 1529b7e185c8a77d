import { describe, expect, it } from '@jest/globals';
import {
  buildPolicy,
  withModules,
  withRules,
  withSpec,
  withoutSpecField,
} from '../../test/builders/policy.js';
import type { PolicyModifier } from '../../test/builders/policy.js';
import { LintCode, lintPolicy, pathCovers } from './lint.js';

const now = new Date('2026-12-01T00:00:00Z');
const codes = (...modifiers: PolicyModifier[]): string[] =>
  lintPolicy(buildPolicy(...modifiers), { now }).map((f) => `${f.severity}:${f.code}@${f.field}`);

describe('lintPolicy', () => {
  it('finds nothing in the reference policy', () => {
    expect(codes()).toEqual([]);
  });

  const cases: { name: string; modify: PolicyModifier[]; expected: string[] }[] = [
    {
      name: 'all methods on all paths',
      modify: [withRules({ methods: ['*'], paths: ['/**'] })],
      expected: ['error:AllMethodsAllPaths@spec.rules[0].paths[0]'],
    },
    {
      name: 'a wildcard that swallows the whole API',
      modify: [withRules({ methods: ['GET'], paths: ['/**'] })],
      expected: ['error:WildcardWholeApi@spec.rules[0].paths[0]'],
    },
    {
      name: 'a parameter then a wildcard is still the whole API',
      modify: [withRules({ methods: ['GET'], paths: ['/{tenant}/**'] })],
      expected: ['error:WildcardWholeApi@spec.rules[0].paths[0]'],
    },
    {
      name: 'a wildcard under a short prefix',
      modify: [withRules({ methods: ['GET'], paths: ['/api/v1/**'] })],
      expected: ['warning:BroadWildcard@spec.rules[0].paths[0]'],
    },
    {
      name: 'a wildcard under a resource is fine',
      modify: [withRules({ methods: ['GET'], paths: ['/api/v1/customers/**'] })],
      expected: [],
    },
    {
      name: 'every method on one path',
      modify: [withRules({ methods: ['*'], paths: ['/api/v1/customers'] })],
      expected: ['warning:AllMethods@spec.rules[0].methods'],
    },
    {
      name: 'every gRPC method',
      modify: [withRules({ grpc: { service: 'erp.finance.v1.Invoices', methods: ['*'] } })],
      expected: ['warning:AllGrpcMethods@spec.rules[0].grpc.methods'],
    },
    {
      name: 'no rate limit',
      modify: [withoutSpecField('rateLimit')],
      expected: ['error:NoRateLimit@spec.rateLimit'],
    },
    {
      name: 'a certificate TTL above 24h',
      modify: [withSpec({ certificateTTL: '48h' })],
      expected: ['error:CertificateTtlTooLong@spec.certificateTTL'],
    },
    { name: 'a 24h TTL is the limit', modify: [withSpec({ certificateTTL: '24h' })], expected: [] },
    {
      name: 'no validUntil',
      modify: [withoutSpecField('validUntil')],
      expected: ['error:NoValidUntil@spec.validUntil'],
    },
    {
      name: 'a past validUntil',
      modify: [withSpec({ validUntil: '2026-11-30T23:59:59Z' })],
      expected: ['error:ValidUntilPassed@spec.validUntil'],
    },
    {
      name: 'a validUntil years away',
      modify: [withSpec({ validUntil: '2030-01-01T00:00:00Z' })],
      expected: ['warning:ValidUntilTooFar@spec.validUntil'],
    },
    {
      name: 'a tokenize selector inside a masked value',
      modify: [
        withSpec({ dataProtection: { mask: ['$.items[*]'], tokenize: ['$.items[*].email'] } }),
      ],
      expected: ['error:SelectorNeverMatches@spec.dataProtection.tokenize[0]'],
    },
    {
      name: 'the same field masked and tokenized',
      modify: [
        withSpec({
          dataProtection: { mask: ['$.items[*].email'], tokenize: ["$['items'][*].email"] },
        }),
      ],
      expected: ['error:SelectorNeverMatches@spec.dataProtection.tokenize[0]'],
    },
    {
      name: 'a mask under a wildcard mask',
      modify: [withSpec({ dataProtection: { mask: ['$.*', '$.customer.iban'] } })],
      expected: ['error:SelectorNeverMatches@spec.dataProtection.mask[1]'],
    },
    {
      name: 'duplicate rules (methods in another order)',
      modify: [
        withRules(
          { methods: ['GET', 'HEAD'], paths: ['/api/v1/customers'] },
          { methods: ['HEAD', 'GET'], paths: ['/api/v1/customers'] },
        ),
      ],
      expected: ['error:DuplicateRule@spec.rules[1]'],
    },
    {
      name: 'a rule shadowed by a broader one',
      modify: [
        withRules(
          { methods: ['GET'], paths: ['/api/v1/customers/{id}'] },
          { methods: ['GET', 'PUT'], paths: ['/api/v1/customers/**'] },
        ),
      ],
      expected: ['warning:ShadowedRule@spec.rules[0]'],
    },
    {
      name: 'a path shadowed inside its rule',
      modify: [
        withRules({ methods: ['GET'], paths: ['/api/v1/customers/42', '/api/v1/customers/{id}'] }),
      ],
      expected: ['warning:ShadowedPath@spec.rules[0].paths[0]'],
    },
    {
      name: 'gRPC rules shadowed by a wildcard service rule',
      modify: [
        withRules(
          { grpc: { service: 'erp.finance.v1.Invoices', methods: ['GetInvoice'] } },
          { grpc: { service: 'erp.finance.v1.Invoices', methods: ['*'] } },
        ),
      ],
      expected: [
        'warning:AllGrpcMethods@spec.rules[1].grpc.methods',
        'warning:ShadowedRule@spec.rules[0]',
      ],
    },
    {
      name: 'source equal to destination',
      modify: [withModules('crm', 'crm')],
      expected: ['error:SelfIntegration@spec.destination.module'],
    },
  ];

  it.each(cases)('reports $name', ({ modify, expected }) => {
    expect(codes(...modify).sort()).toEqual([...expected].sort());
  });

  it('lists errors before warnings and honours a configured TTL maximum', () => {
    const findings = lintPolicy(
      buildPolicy(
        withRules({ methods: ['*'], paths: ['/api/v1/customers'] }),
        withSpec({ certificateTTL: '2h' }),
      ),
      { now, maxCertificateTtlMs: 3_600_000 },
    );
    expect(findings.map((f) => f.code)).toEqual([
      LintCode.CertificateTtlTooLong,
      LintCode.AllMethods,
    ]);
    expect(findings[0]?.message).toContain('maximum of 1h');
  });
});

describe('pathCovers', () => {
  it.each([
    ['/a/**', '/a/b/c', true],
    ['/a/**', '/a', true],
    ['/a/{x}', '/a/b', true],
    ['/a/{x}', '/a/{y}', true],
    ['/a/b', '/a/{x}', false],
    ['/a/{x}', '/a/b/c', false],
    ['/a/{x}/**', '/a/**', false],
    ['/a/b', '/a/b', true],
    ['/a/b', '/a/c', false],
  ])('%s covers %s: %s', (outer, inner, expected) => {
    expect(pathCovers(outer, inner)).toBe(expected);
  });
});
