import { describe, expect, it } from '@jest/globals';
import {
  buildPolicy,
  withAnnotation,
  withModules,
  withRules,
  withSpec,
  withoutSpecField,
} from '../../test/builders/policy.js';
import type { PolicyModifier } from '../../test/builders/policy.js';
import { FieldErrorCode, pathTemplateProblem, validatePolicyDocument } from './validate.js';

const raw =
  (mutate: (doc: Record<string, unknown>) => void): PolicyModifier =>
  (p) =>
    mutate(p as unknown as Record<string, unknown>);

describe('validatePolicyDocument', () => {
  it('accepts the reference policy', () => {
    const result = validatePolicyDocument(buildPolicy());
    expect(result.errors).toEqual([]);
    expect(result.policy?.metadata.name).toBe('crm-reads-customers');
  });

  const cases: {
    name: string;
    modify: PolicyModifier;
    field: string;
    code: string;
    text?: RegExp;
  }[] = [
    {
      name: 'wrong apiVersion',
      modify: raw((d) => (d['apiVersion'] = 'erpguard.io/v1')),
      field: 'apiVersion',
      code: FieldErrorCode.NotSupported,
    },
    {
      name: 'wrong kind',
      modify: raw((d) => (d['kind'] = 'Deployment')),
      field: 'kind',
      code: FieldErrorCode.NotSupported,
    },
    {
      name: 'missing name',
      modify: (p) => (p.metadata.name = ''),
      field: 'metadata.name',
      code: FieldErrorCode.Required,
    },
    {
      name: 'upper-case name',
      modify: (p) => (p.metadata.name = 'CRM'),
      field: 'metadata.name',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'unknown top-level field',
      modify: raw((d) => (d['specs'] = {})),
      field: '<root>.specs',
      code: FieldErrorCode.Unknown,
    },
    {
      name: 'unknown spec field (typo)',
      modify: raw((d) => ((d['spec'] as Record<string, unknown>)['rateLimt'] = {})),
      field: 'spec.rateLimt',
      code: FieldErrorCode.Unknown,
    },
    {
      name: 'missing source',
      modify: withoutSpecField('source'),
      field: 'spec.source',
      code: FieldErrorCode.Required,
    },
    {
      name: 'missing source module',
      modify: withSpec({ source: { module: '' } }),
      field: 'spec.source.module',
      code: FieldErrorCode.Required,
    },
    {
      name: 'module with upper case',
      modify: withModules('CRM', 'finance'),
      field: 'spec.source.module',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'source equals destination',
      modify: withModules('crm', 'crm'),
      field: 'spec.destination.module',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'namespace on destination',
      modify: withSpec({ destination: { module: 'finance', namespace: 'x' } }),
      field: 'spec.destination.namespace',
      code: FieldErrorCode.Unknown,
    },
    {
      name: 'unknown mode',
      modify: raw((d) => ((d['spec'] as Record<string, unknown>)['mode'] = 'Block')),
      field: 'spec.mode',
      code: FieldErrorCode.NotSupported,
    },
    {
      name: 'empty rules',
      modify: withRules(),
      field: 'spec.rules',
      code: FieldErrorCode.Required,
    },
    {
      name: 'rule with both HTTP and gRPC',
      modify: withRules({
        methods: ['GET'],
        paths: ['/a'],
        grpc: { service: 'a.B', methods: ['C'] },
      }),
      field: 'spec.rules[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'rule with neither',
      modify: withRules({}),
      field: 'spec.rules[0]',
      code: FieldErrorCode.Required,
    },
    {
      name: 'lower-case method',
      modify: withRules({ methods: ['get'], paths: ['/a'] }),
      field: 'spec.rules[0].methods[0]',
      code: FieldErrorCode.NotSupported,
      text: /case-sensitive, write "GET"/,
    },
    {
      name: 'unknown method',
      modify: withRules({ methods: ['GET', 'TRACE'], paths: ['/a'] }),
      field: 'spec.rules[0].methods[1]',
      code: FieldErrorCode.NotSupported,
    },
    {
      name: 'star with other methods',
      modify: withRules({ methods: ['*', 'GET'], paths: ['/a'] }),
      field: 'spec.rules[0].methods',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'duplicate method',
      modify: withRules({ methods: ['GET', 'GET'], paths: ['/a'] }),
      field: 'spec.rules[0].methods[1]',
      code: FieldErrorCode.Duplicate,
    },
    {
      name: 'methods without paths',
      modify: withRules({ methods: ['GET'] }),
      field: 'spec.rules[0].paths',
      code: FieldErrorCode.Required,
    },
    {
      name: 'relative path',
      modify: withRules({ methods: ['GET'], paths: ['api/v1'] }),
      field: 'spec.rules[0].paths[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'dot segment in path',
      modify: withRules({ methods: ['GET'], paths: ['/api/../admin'] }),
      field: 'spec.rules[0].paths[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'percent in path',
      modify: withRules({ methods: ['GET'], paths: ['/api/a%2Fb'] }),
      field: 'spec.rules[0].paths[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: '** not last',
      modify: withRules({ methods: ['GET'], paths: ['/api/**/x'] }),
      field: 'spec.rules[0].paths[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'partial parameter',
      modify: withRules({ methods: ['GET'], paths: ['/api/v{version}'] }),
      field: 'spec.rules[0].paths[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'too many rules',
      modify: withRules(
        ...Array.from({ length: 65 }, (_, i) => ({ methods: ['GET'], paths: [`/r${i}`] })),
      ),
      field: 'spec.rules',
      code: FieldErrorCode.TooMany,
    },
    {
      name: 'bad gRPC service',
      modify: withRules({ grpc: { service: 'erp finance', methods: ['Get'] } }),
      field: 'spec.rules[0].grpc.service',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'bad gRPC method',
      modify: withRules({ grpc: { service: 'erp.Finance', methods: ['/Get'] } }),
      field: 'spec.rules[0].grpc.methods[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'zero requests per second',
      modify: withSpec({ rateLimit: { requestsPerSecond: 0 } }),
      field: 'spec.rateLimit.requestsPerSecond',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'fractional rate',
      modify: withSpec({ rateLimit: { requestsPerSecond: 1.5 } }),
      field: 'spec.rateLimit.requestsPerSecond',
      code: FieldErrorCode.TypeInvalid,
    },
    {
      name: 'burst below rate',
      modify: withSpec({ rateLimit: { requestsPerSecond: 50, burst: 10 } }),
      field: 'spec.rateLimit.burst',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'rate as string',
      modify: raw(
        (d) => ((d['spec'] as Record<string, unknown>)['rateLimit'] = { requestsPerSecond: '50' }),
      ),
      field: 'spec.rateLimit.requestsPerSecond',
      code: FieldErrorCode.TypeInvalid,
    },
    {
      name: 'selector without $',
      modify: withSpec({ dataProtection: { mask: ['items.iban'] } }),
      field: 'spec.dataProtection.mask[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'selector filter',
      modify: withSpec({ dataProtection: { tokenize: ['$.items[?(@.x)]'] } }),
      field: 'spec.dataProtection.tokenize[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'root selector',
      modify: withSpec({ dataProtection: { mask: ['$'] } }),
      field: 'spec.dataProtection.mask[0]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'ttl not a duration',
      modify: withSpec({ certificateTTL: 'forever' }),
      field: 'spec.certificateTTL',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'zero ttl',
      modify: withSpec({ certificateTTL: '0s' }),
      field: 'spec.certificateTTL',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'validUntil not a date',
      modify: withSpec({ validUntil: 'next year' }),
      field: 'spec.validUntil',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'validUntil without zone',
      modify: withSpec({ validUntil: '2027-06-30T00:00:00' }),
      field: 'spec.validUntil',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'approval not JSON',
      modify: withAnnotation('erpguard.io/approval', 'alice'),
      field: 'metadata.annotations[erpguard.io/approval]',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'approval with a bad hash',
      modify: withAnnotation(
        'erpguard.io/approval',
        '{"by":"a","at":"2026-01-01T00:00:00Z","specHash":"md5:x"}',
      ),
      field: 'metadata.annotations[erpguard.io/approval].specHash',
      code: FieldErrorCode.Invalid,
    },
    {
      name: 'label value not a string',
      modify: raw((d) => ((d['metadata'] as Record<string, unknown>)['labels'] = { a: 1 })),
      field: 'metadata.labels[a]',
      code: FieldErrorCode.TypeInvalid,
    },
  ];

  it.each(cases)('rejects $name at $field', ({ modify, field, code, text }) => {
    const result = validatePolicyDocument(buildPolicy(modify));
    expect(result.policy).toBeUndefined();
    const error = result.errors.find((e) => e.field === field);
    expect(error).toBeDefined();
    expect(error?.code).toBe(code);
    expect(error?.message.startsWith(field)).toBe(true);
    if (text) expect(error?.message).toMatch(text);
  });

  it.each([
    ['2027-06-31T00:00:00Z', false],
    ['2027-02-29T00:00:00Z', false],
    ['2028-02-29T00:00:00Z', true],
    ['2027-06-30T24:00:00Z', false],
    ['2027-06-30T23:59:59.123+02:00', true],
  ])('validUntil %s is valid: %s', (validUntil, valid) => {
    const result = validatePolicyDocument(buildPolicy(withSpec({ validUntil })));
    expect(result.errors.some((e) => e.field === 'spec.validUntil')).toBe(!valid);
  });

  it.each([
    ['1ns', true],
    ['0h0m', false],
  ])('certificateTTL %s is valid: %s', (certificateTTL, valid) => {
    const result = validatePolicyDocument(buildPolicy(withSpec({ certificateTTL })));
    expect(result.errors.some((e) => e.field === 'spec.certificateTTL')).toBe(!valid);
  });

  it.each([42, 'text', [], [buildPolicy()]])('rejects a non-object document %#', (doc) => {
    const result = validatePolicyDocument(doc);
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]?.field).toBe('<root>');
  });

  it('collects every error instead of stopping at the first', () => {
    const result = validatePolicyDocument(
      buildPolicy(
        withModules('CRM', 'Finance'),
        withSpec({ certificateTTL: 'x', validUntil: 'y' }),
      ),
    );
    expect(result.errors.map((e) => e.field).sort()).toEqual(
      [
        'spec.certificateTTL',
        'spec.destination.module',
        'spec.source.module',
        'spec.validUntil',
      ].sort(),
    );
  });
});

describe('pathTemplateProblem', () => {
  it.each([
    ['/', undefined],
    ['/**', undefined],
    ['/api/v1/customers/{id}', undefined],
    ['/api/v1/customers/{id}/invoices/**', undefined],
    ["/api/v1/it's:fine@x", undefined],
    ['/api/', "must not end with '/' (write the path without it)"],
    ['/api//x', "must not contain empty segments ('//')"],
    ['/api/./x', "must not contain '.' or '..' segments"],
    ['/api/.../x', "must not contain '.' or '..' segments"],
    ['/a;b', "must not contain ';' path parameters"],
    ['/a b', 'segment "a b" contains characters not allowed in a path'],
    ['/a\\b', 'segment "a\\\\b" contains characters not allowed in a path'],
    ['/{id', 'segment "{id" must be a whole-segment parameter like \'{id}\''],
  ])('%s', (path, problem) => {
    expect(pathTemplateProblem(path)).toBe(problem);
  });
});
