import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import {
  API_VERSION,
  KIND,
  type ErpIntegrationPolicy,
  type ErpIntegrationPolicySpec,
  type PolicyMode,
} from '../api/v1alpha1/index.js';
import { compilePolicies, type CompiledPolicySet } from './compile.js';
import { decide } from './decide.js';
import { DecisionReason, type Call, type Decision, type PathRejection } from './decision-types.js';
import { normalizeRequestTarget } from './normalize-path.js';

function policy(
  ns: string,
  name: string,
  spec: Partial<ErpIntegrationPolicySpec> &
    Pick<ErpIntegrationPolicySpec, 'source' | 'destination' | 'rules'>,
): ErpIntegrationPolicy {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: ns }, spec };
}

const POLICIES: ErpIntegrationPolicy[] = [
  policy('erp', 'crm-reads-customers', {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [
      { methods: ['GET'], paths: ['/api/v1/customers', '/api/v1/customers/{id}'] },
      { methods: ['POST'], paths: ['/api/v1/customers/{id}/notes'] },
      { grpc: { service: 'erp.finance.v1.Invoices', methods: ['GetInvoice'] } },
    ],
    rateLimit: { requestsPerSecond: 50, burst: 100 },
    dataProtection: { mask: ['$.items[*].iban'] },
  }),
  policy('erp', 'crm-v2-reads', {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET'], paths: ['/api/v2/**'] }],
    rateLimit: { requestsPerSecond: 5 },
  }),
  policy('erp', 'bi-reports-audit', {
    source: { module: 'bi' },
    destination: { module: 'finance' },
    mode: 'Audit',
    rules: [
      { methods: ['GET'], paths: ['/api/v1/reports/**'] },
      { grpc: { service: 'erp.finance.v1.Reports', methods: ['*'] } },
    ],
    rateLimit: { requestsPerSecond: 1 },
  }),
  policy('erp', 'wms-stock', {
    source: { module: 'wms' },
    destination: { module: 'inventory' },
    rules: [
      { methods: ['GET'], paths: ['/api/v1/stock/{sku}'] },
      { methods: ['PUT', 'DELETE'], paths: ['/api/v1/stock/{sku}/reservations/{id}'] },
      { methods: ['*'], paths: ['/api/v1/pallets/{id}'] },
      { methods: ['GET'], paths: ['/'] },
    ],
  }),
  // Specificity: the wide policy sorts first by name but loses to the narrower template.
  policy('erp', 'a-wide', {
    source: { module: 'crm' },
    destination: { module: 'inventory' },
    rules: [{ methods: ['GET'], paths: ['/api/v1/items/**', '/api/v1/items/{id}/price'] }],
  }),
  policy('erp', 'z-narrow', {
    source: { module: 'crm' },
    destination: { module: 'inventory' },
    rules: [
      { methods: ['GET'], paths: ['/api/v1/items/{id}'] },
      { methods: ['GET'], paths: ['/api/v1/items/special'] },
      { methods: ['GET'], paths: ['/api/v1/items/{id}/price'] },
    ],
  }),
  // Same template in two policies: the lower name wins; within one policy the lower rule index.
  policy('erp', 'm-first', {
    source: { module: 'crm' },
    destination: { module: 'inventory' },
    rules: [
      { methods: ['GET'], paths: ['/api/v1/warehouses'] },
      { methods: ['POST'], paths: ['/api/v1/warehouses'] },
    ],
  }),
  policy('erp', 'n-second', {
    source: { module: 'crm' },
    destination: { module: 'inventory' },
    rules: [
      { methods: ['POST'], paths: ['/api/v1/warehouses'] },
      { methods: ['GET', 'POST'], paths: ['/api/v1/warehouses'] },
    ],
  }),
  // Another namespace: the caller is crm in namespace `sales` (the policy's namespace by default).
  policy('sales', 'crm-quotes', {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET'], paths: ['/api/v1/quotes/{id}'] }],
  }),
  // Source namespace set explicitly.
  policy('erp', 'hr-payroll', {
    source: { module: 'hr', namespace: 'people' },
    destination: { module: 'finance' },
    rules: [{ methods: ['POST'], paths: ['/api/v1/payroll-runs'] }],
  }),
  // Both Enforce and Audit for one caller.
  policy('erp', 'sales-orders', {
    source: { module: 'sales' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET'], paths: ['/api/v1/orders/{id}'] }],
  }),
  policy('erp', 'sales-orders-next', {
    source: { module: 'sales' },
    destination: { module: 'finance' },
    mode: 'Audit',
    rules: [
      { methods: ['POST'], paths: ['/api/v1/orders'] },
      { methods: ['GET'], paths: ['/api/v1/orders/{id}'] },
    ],
  }),
];

const http = (from: string, method: string, target: string, ns = 'erp'): Call => ({
  kind: 'http',
  callerModule: from,
  callerNamespace: ns,
  method,
  target,
});
const grpc = (from: string, path: string, ns = 'erp'): Call => ({
  kind: 'grpc',
  callerModule: from,
  callerNamespace: ns,
  path,
});

interface Expect {
  allowed: boolean;
  reason: DecisionReason;
  policy?: string;
  rule?: number;
  mode?: PolicyMode;
  template?: string;
  wouldBe?: DecisionReason;
  rejection?: PathRejection;
  path?: string;
}

const A = DecisionReason;
const CASES: [string, string, Call, Expect][] = [
  // Allowed (Enforce)
  [
    'list endpoint',
    'finance',
    http('crm', 'GET', '/api/v1/customers'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/crm-reads-customers',
      rule: 0,
      mode: 'Enforce',
      template: '/api/v1/customers',
    },
  ],
  [
    'template parameter',
    'finance',
    http('crm', 'GET', '/api/v1/customers/42?expand=all'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/crm-reads-customers',
      rule: 0,
      template: '/api/v1/customers/{id}',
      path: '/api/v1/customers/42',
    },
  ],
  [
    'second rule',
    'finance',
    http('crm', 'POST', '/api/v1/customers/42/notes'),
    { allowed: true, reason: A.Allowed, policy: 'erp/crm-reads-customers', rule: 1 },
  ],
  [
    'encoded unreserved letters match the decoded literal',
    'finance',
    http('crm', 'GET', '/api/v1/%63ustomers'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/crm-reads-customers',
      path: '/api/v1/customers',
    },
  ],
  [
    'parameter takes any decoded segment',
    'finance',
    http('crm', 'GET', '/api/v1/customers/a%20b'),
    { allowed: true, reason: A.Allowed, template: '/api/v1/customers/{id}' },
  ],
  [
    '** matches its prefix itself',
    'finance',
    http('crm', 'GET', '/api/v2'),
    { allowed: true, reason: A.Allowed, policy: 'erp/crm-v2-reads', template: '/api/v2/**' },
  ],
  [
    '** matches deep paths',
    'finance',
    http('crm', 'GET', '/api/v2/customers/1/invoices/2'),
    { allowed: true, reason: A.Allowed, policy: 'erp/crm-v2-reads' },
  ],
  [
    'gRPC exact method',
    'finance',
    grpc('crm', '/erp.finance.v1.Invoices/GetInvoice'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/crm-reads-customers',
      rule: 2,
      template: 'erp.finance.v1.Invoices/GetInvoice',
    },
  ],
  [
    'root template',
    'inventory',
    http('wms', 'GET', '/'),
    { allowed: true, reason: A.Allowed, policy: 'erp/wms-stock', rule: 3, template: '/' },
  ],
  [
    '* methods include DELETE',
    'inventory',
    http('wms', 'DELETE', '/api/v1/pallets/7'),
    { allowed: true, reason: A.Allowed, rule: 2 },
  ],
  [
    'two parameters',
    'inventory',
    http('wms', 'PUT', '/api/v1/stock/SKU-1/reservations/9'),
    { allowed: true, reason: A.Allowed, rule: 1 },
  ],
  [
    'explicit source namespace',
    'finance',
    http('hr', 'POST', '/api/v1/payroll-runs', 'people'),
    { allowed: true, reason: A.Allowed, policy: 'erp/hr-payroll' },
  ],
  [
    'caller in the policy namespace by default',
    'finance',
    http('crm', 'GET', '/api/v1/quotes/1', 'sales'),
    { allowed: true, reason: A.Allowed, policy: 'sales/crm-quotes' },
  ],
  // Specificity
  [
    'param beats ** although ** sorts first by name',
    'inventory',
    http('crm', 'GET', '/api/v1/items/1'),
    { allowed: true, reason: A.Allowed, policy: 'erp/z-narrow', rule: 0 },
  ],
  [
    'literal beats param',
    'inventory',
    http('crm', 'GET', '/api/v1/items/special'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/z-narrow',
      rule: 1,
      template: '/api/v1/items/special',
    },
  ],
  [
    'same template: lower policy name wins',
    'inventory',
    http('crm', 'GET', '/api/v1/items/1/price'),
    {
      allowed: true,
      reason: A.Allowed,
      policy: 'erp/a-wide',
      template: '/api/v1/items/{id}/price',
    },
  ],
  [
    '** covers what nothing narrower covers',
    'inventory',
    http('crm', 'GET', '/api/v1/items/1/stock'),
    { allowed: true, reason: A.Allowed, policy: 'erp/a-wide', template: '/api/v1/items/**' },
  ],
  [
    'lower policy name before lower rule index',
    'inventory',
    http('crm', 'POST', '/api/v1/warehouses'),
    { allowed: true, reason: A.Allowed, policy: 'erp/m-first', rule: 1 },
  ],
  [
    'same template across policies by name',
    'inventory',
    http('crm', 'GET', '/api/v1/warehouses'),
    { allowed: true, reason: A.Allowed, policy: 'erp/m-first', rule: 0 },
  ],
  // Enforce first, then Audit
  [
    'Enforce rule wins over an Audit rule for the same call',
    'finance',
    http('sales', 'GET', '/api/v1/orders/1'),
    { allowed: true, reason: A.Allowed, policy: 'erp/sales-orders', mode: 'Enforce' },
  ],
  [
    'Audit rule matches',
    'finance',
    http('sales', 'POST', '/api/v1/orders'),
    { allowed: true, reason: A.Allowed, policy: 'erp/sales-orders-next', rule: 0, mode: 'Audit' },
  ],
  [
    'Audit policy: would deny',
    'finance',
    http('sales', 'DELETE', '/api/v1/orders/1'),
    { allowed: true, reason: A.AuditWouldDeny, wouldBe: A.NoMatchingRule },
  ],
  [
    'Audit-only caller, rule matches',
    'finance',
    http('bi', 'GET', '/api/v1/reports/q3/revenue'),
    { allowed: true, reason: A.Allowed, policy: 'erp/bi-reports-audit', mode: 'Audit' },
  ],
  [
    'Audit-only caller, no rule',
    'finance',
    http('bi', 'DELETE', '/api/v1/customers/1'),
    { allowed: true, reason: A.AuditWouldDeny, wouldBe: A.NoMatchingRule },
  ],
  [
    'Audit gRPC service wildcard',
    'finance',
    grpc('bi', '/erp.finance.v1.Reports/Anything'),
    { allowed: true, reason: A.Allowed, mode: 'Audit', template: 'erp.finance.v1.Reports/*' },
  ],
  [
    'Audit gRPC would deny',
    'finance',
    grpc('bi', '/erp.finance.v1.Invoices/DeleteInvoice'),
    { allowed: true, reason: A.AuditWouldDeny, wouldBe: A.NoMatchingRule },
  ],
  // NoMatchingRule
  [
    'wrong method',
    'finance',
    http('crm', 'POST', '/api/v1/invoices'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'HEAD is not GET',
    'finance',
    http('crm', 'HEAD', '/api/v1/customers'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    '* does not cover methods outside HTTP_METHODS',
    'inventory',
    http('wms', 'PROPFIND', '/api/v1/pallets/7'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'parameter needs a segment',
    'finance',
    http('crm', 'POST', '/api/v1/customers/notes'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'parameter is one segment only',
    'finance',
    http('crm', 'GET', '/api/v1/customers/1/2'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'paths are case-sensitive',
    'finance',
    http('crm', 'GET', '/API/v1/customers'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'prefix of a template',
    'finance',
    http('crm', 'GET', '/api/v1'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'root is not a ** prefix elsewhere',
    'finance',
    http('crm', 'GET', '/'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'query does not make a match',
    'finance',
    http('crm', 'GET', '/api/v1/invoices?path=/api/v1/customers'),
    { allowed: false, reason: A.NoMatchingRule, path: '/api/v1/invoices' },
  ],
  [
    'double encoding is not the literal it hides',
    'finance',
    http('crm', 'GET', '/api/v1%252Fcustomers'),
    { allowed: false, reason: A.InvalidPath, rejection: 'DoubleEncoding' },
  ],
  [
    'gRPC other method',
    'finance',
    grpc('crm', '/erp.finance.v1.Invoices/DeleteInvoice'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'HTTP call does not use gRPC rules',
    'finance',
    http('crm', 'POST', '/erp.finance.v1.Invoices/GetInvoice'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  // NoPolicy
  [
    'unknown caller',
    'finance',
    http('wms', 'GET', '/api/v1/customers'),
    { allowed: false, reason: A.NoPolicy },
  ],
  [
    'caller with a policy in its namespace, but not for this call',
    'finance',
    http('crm', 'GET', '/api/v1/customers', 'sales'),
    { allowed: false, reason: A.NoMatchingRule },
  ],
  [
    'caller in another namespace',
    'finance',
    http('crm', 'GET', '/api/v1/customers', 'ops'),
    { allowed: false, reason: A.NoPolicy },
  ],
  [
    'policy namespace is not the source namespace',
    'finance',
    http('hr', 'POST', '/api/v1/payroll-runs', 'erp'),
    { allowed: false, reason: A.NoPolicy },
  ],
  [
    'unknown destination',
    'payroll',
    http('crm', 'GET', '/api/v1/customers'),
    { allowed: false, reason: A.NoPolicy },
  ],
  [
    'policy for another destination',
    'inventory',
    http('bi', 'GET', '/api/v1/reports/x'),
    { allowed: false, reason: A.NoPolicy },
  ],
  [
    'gRPC unknown caller',
    'finance',
    grpc('wms', '/erp.finance.v1.Invoices/GetInvoice'),
    { allowed: false, reason: A.NoPolicy },
  ],
  // Invalid input: denied before any policy is consulted, Audit callers included
  [
    'lower-case method',
    'finance',
    http('crm', 'get', '/api/v1/customers'),
    { allowed: false, reason: A.InvalidMethod },
  ],
  [
    'mixed-case method',
    'finance',
    http('crm', 'GeT', '/api/v1/customers'),
    { allowed: false, reason: A.InvalidMethod },
  ],
  [
    'method with space',
    'finance',
    http('crm', 'GET /api/v1/customers', '/x'),
    { allowed: false, reason: A.InvalidMethod },
  ],
  [
    'invalid method from an Audit caller',
    'finance',
    http('bi', 'get', '/api/v1/reports/x'),
    { allowed: false, reason: A.InvalidMethod },
  ],
  [
    'encoded slash',
    'finance',
    http('crm', 'GET', '/api/v1/customers%2F42'),
    { allowed: false, reason: A.InvalidPath, rejection: 'EncodedSeparator' },
  ],
  [
    'dot-dot into an allowed prefix',
    'finance',
    http('crm', 'GET', '/api/v2/../v1/payroll-runs'),
    { allowed: false, reason: A.InvalidPath, rejection: 'DotSegment' },
  ],
  [
    'trailing slash',
    'finance',
    http('crm', 'GET', '/api/v1/customers/'),
    { allowed: false, reason: A.InvalidPath, rejection: 'EmptySegment' },
  ],
  [
    'path parameter',
    'finance',
    http('crm', 'GET', '/api/v1/customers;x=1'),
    { allowed: false, reason: A.InvalidPath, rejection: 'PathParameter' },
  ],
  [
    'absolute-form',
    'finance',
    http('crm', 'GET', 'http://finance/api/v1/customers'),
    { allowed: false, reason: A.InvalidPath, rejection: 'NotAbsolute' },
  ],
  [
    'invalid path from an Audit caller',
    'finance',
    http('bi', 'GET', '/api/v1/reports/%2E%2E/x'),
    { allowed: false, reason: A.InvalidPath, rejection: 'EncodedDot' },
  ],
  [
    'invalid path from an unknown caller',
    'finance',
    http('nobody', 'GET', '/a//b'),
    { allowed: false, reason: A.InvalidPath, rejection: 'EmptySegment' },
  ],
  [
    'gRPC path without method',
    'finance',
    grpc('crm', '/erp.finance.v1.Invoices'),
    { allowed: false, reason: A.InvalidGrpcPath },
  ],
  [
    'gRPC path with extra segment',
    'finance',
    grpc('crm', '/erp.finance.v1.Invoices/GetInvoice/x'),
    { allowed: false, reason: A.InvalidGrpcPath },
  ],
  [
    'gRPC path with dot-dot',
    'finance',
    grpc('bi', '/erp.finance.v1.Reports/../x'),
    { allowed: false, reason: A.InvalidGrpcPath },
  ],
  [
    'gRPC path from an Audit caller, malformed',
    'finance',
    grpc('bi', 'erp.finance.v1.Reports/List'),
    { allowed: false, reason: A.InvalidGrpcPath },
  ],
];

function check(d: Decision, e: Expect): void {
  expect(d.allowed).toBe(e.allowed);
  expect(d.reason).toBe(e.reason);
  if (e.policy !== undefined) expect(d.matched?.policy).toBe(e.policy);
  if (e.rule !== undefined) expect(d.matched?.ruleIndex).toBe(e.rule);
  if (e.mode !== undefined) expect(d.matched?.mode).toBe(e.mode);
  if (e.template !== undefined) expect(d.matchedTemplate).toBe(e.template);
  if (e.path !== undefined) expect(d.normalizedPath).toBe(e.path);
  expect(d.wouldBe).toBe(e.wouldBe);
  expect(d.pathRejection).toBe(e.rejection);
  if (e.reason === A.Allowed) expect(d.matched).toBeDefined();
  else expect(d.matched).toBeUndefined();
  expect(d.message.length).toBeGreaterThan(0);
}

describe('decide', () => {
  const compiled = compilePolicies(POLICIES);

  it('compiles the fixture without problems', () => {
    expect(compiled.problems).toEqual([]);
    expect(compiled.stats.nonDeterministicTables).toBe(0);
  });

  it.each(CASES)('%s', (_name, destination, call, e) =>
    check(decide(compiled, destination, call), e),
  );

  it('gives the same answers whatever the order of the input policies', () => {
    const reversed = compilePolicies([...POLICIES].reverse());
    const rotated = compilePolicies([...POLICIES.slice(5), ...POLICIES.slice(0, 5)]);
    for (const [, destination, call] of CASES) {
      const d = decide(compiled, destination, call);
      expect(decide(reversed, destination, call)).toEqual(d);
      expect(decide(rotated, destination, call)).toEqual(d);
    }
  });

  it('gives the same answers with the trie walk as with the determinised tables', () => {
    const trie = compilePolicies(POLICIES, { maxStatesPerTable: 1 });
    expect(trie.stats.nonDeterministicTables).toBeGreaterThan(0);
    for (const [, destination, call, e] of CASES) check(decide(trie, destination, call), e);
  });

  it('returns rate limit and data protection of the matched policy, frozen', () => {
    const d = decide(compiled, 'finance', http('crm', 'GET', '/api/v1/customers/1'));
    expect(d.rateLimit).toEqual({ requestsPerSecond: 50, burst: 100 });
    expect(d.dataProtection).toEqual({ mask: ['$.items[*].iban'] });
    expect(Object.isFrozen(d.rateLimit)).toBe(true);
    expect(Object.isFrozen(d.dataProtection)).toBe(true);
    expect(Object.isFrozen(d.matched)).toBe(true);
    // Mutating the input after compiling changes nothing.
    const input = POLICIES.map((p) => structuredClone(p));
    const c2 = compilePolicies(input);
    const rl = input[0]?.spec.rateLimit;
    if (rl) rl.requestsPerSecond = 1_000_000;
    expect(
      decide(c2, 'finance', http('crm', 'GET', '/api/v1/customers/1')).rateLimit?.requestsPerSecond,
    ).toBe(50);
    const v2 = decide(compiled, 'finance', http('crm', 'GET', '/api/v2/x'));
    expect(v2.rateLimit).toEqual({ requestsPerSecond: 5 });
    expect(v2.dataProtection).toBeUndefined();
  });

  it('explains denials with the policy and the call that would need a rule', () => {
    expect(decide(compiled, 'finance', http('crm', 'POST', '/api/v1/invoices')).message).toBe(
      'no rule of policies erp/crm-reads-customers, erp/crm-v2-reads allows POST /api/v1/invoices',
    );
    expect(decide(compiled, 'inventory', http('wms', 'POST', '/x')).message).toBe(
      'no rule of policy erp/wms-stock allows POST /x',
    );
    expect(decide(compiled, 'finance', http('wms', 'GET', '/x')).message).toBe(
      'no verified policy lets "wms" (namespace "erp") call "finance"',
    );
    expect(decide(compiled, 'finance', http('bi', 'PUT', '/x')).message).toContain('Audit mode');
    expect(decide(compiled, 'finance', http('crm', 'GET', '/api/v1/customers/1')).message).toBe(
      'allowed by rule 0 of policy erp/crm-reads-customers: GET /api/v1/customers/{id}',
    );
    const bad = decide(compiled, 'finance', http('crm', 'get\r\nX: 1', '/x'));
    expect(bad.message).not.toMatch(/[\r\n]/);
  });

  it('lists many policies briefly', () => {
    const many = Array.from({ length: 6 }, (_, i) =>
      policy('erp', `p${i}`, {
        source: { module: 'crm' },
        destination: { module: 'bi' },
        rules: [{ methods: ['GET'], paths: [`/r${i}`] }],
      }),
    );
    const d = decide(compilePolicies(many), 'bi', http('crm', 'GET', '/x'));
    expect(d.message).toBe('no rule of policies erp/p0, erp/p1, erp/p2 and 3 more allows GET /x');
  });
});

describe('compilePolicies', () => {
  it('compiles only the requested destination', () => {
    const c = compilePolicies(POLICIES, { destinationModule: 'inventory' });
    expect([...c.destinations.keys()]).toEqual(['inventory']);
    expect(decide(c, 'finance', http('crm', 'GET', '/api/v1/customers')).reason).toBe(A.NoPolicy);
    expect(decide(c, 'inventory', http('wms', 'GET', '/api/v1/stock/1')).reason).toBe(A.Allowed);
  });

  it('skips what cannot be compiled, reports it, and never allows more', () => {
    const p = policy('erp', 'broken', {
      source: { module: 'crm' },
      destination: { module: 'wms' },
      rules: [
        { methods: ['get', 'POST'], paths: ['/a'] },
        { methods: ['GET'], paths: ['/b/', '/c/{x', '/d/**/e', '/ok'] },
        { grpc: { service: 'bad service', methods: ['X'] } },
        { grpc: { service: 'erp.S', methods: ['ok', 'not-ok'] } },
        {},
      ],
    });
    const c = compilePolicies([p]);
    expect(c.problems.map((x) => x.field)).toEqual([
      'spec.rules[0].methods[0]',
      'spec.rules[1].paths[0]',
      'spec.rules[1].paths[1]',
      'spec.rules[1].paths[2]',
      'spec.rules[2].grpc.service',
      'spec.rules[3].grpc.methods[1]',
      'spec.rules[4]',
    ]);
    const d = (method: string, target: string): Decision =>
      decide(c, 'wms', http('crm', method, target));
    expect(d('GET', '/a').reason).toBe(A.NoMatchingRule);
    expect(d('POST', '/a').reason).toBe(A.Allowed);
    expect(d('GET', '/ok').reason).toBe(A.Allowed);
    expect(d('GET', '/d/x/e').reason).toBe(A.NoMatchingRule);
    expect(decide(c, 'wms', grpc('crm', '/erp.S/ok')).reason).toBe(A.Allowed);
    expect(decide(c, 'wms', grpc('crm', '/erp.S/other')).reason).toBe(A.NoMatchingRule);
  });

  it('finds every literal of a wide state (binary search over many transitions)', () => {
    const resources = Array.from(
      { length: 60 },
      (_, i) => `res-${String(i * 7919).padStart(6, '0')}`,
    );
    const p = policy('erp', 'wide', {
      source: { module: 'crm' },
      destination: { module: 'wms' },
      rules: resources.map((r) => ({ methods: ['GET'], paths: [`/api/v1/${r}/{id}`] })),
    });
    for (const maxStatesPerTable of [undefined, 1]) {
      const c = compilePolicies([p], maxStatesPerTable === undefined ? {} : { maxStatesPerTable });
      resources.forEach((r, i) => {
        const d = decide(c, 'wms', http('crm', 'GET', `/api/v1/${r}/7`));
        expect(d.matched?.ruleIndex).toBe(i);
      });
      for (const miss of ['res-', 'res-000000x', 'a', 'zzz', 'res-999999']) {
        expect(decide(c, 'wms', http('crm', 'GET', `/api/v1/${miss}/7`)).reason).toBe(
          A.NoMatchingRule,
        );
      }
    }
  });

  it('falls back to the trie walk instead of blowing up on adversarial templates', () => {
    // Template i has a literal at position i and parameters elsewhere: determinising needs 2^k states.
    const k = 14;
    const paths = Array.from(
      { length: k },
      (_, i) =>
        '/' + Array.from({ length: k }, (_, j) => (j === i ? `l${i}` : `{p${j}}`)).join('/'),
    );
    const p = policy('erp', 'adversarial', {
      source: { module: 'crm' },
      destination: { module: 'wms' },
      rules: [{ methods: ['GET'], paths }],
    });
    const c = compilePolicies([p]);
    expect(c.stats.nonDeterministicTables).toBe(1);
    const all = '/' + Array.from({ length: k }, (_, j) => `l${j}`).join('/');
    const d = decide(c, 'wms', http('crm', 'GET', all));
    expect(d.reason).toBe(A.Allowed);
    expect(d.matchedTemplate).toBe(paths[0]);
    expect(decide(c, 'wms', http('crm', 'GET', '/x'.repeat(k))).reason).toBe(A.NoMatchingRule);
    expect(decide(c, 'wms', http('crm', 'GET', '/x'.repeat(k - 1) + '/l13')).reason).toBe(
      A.Allowed,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Reference model: a linear scan with one regular expression per template, written from the
// documented semantics independently of the trie code, checked against the engine on random input.

interface RefHit {
  key: string;
  policy: string;
  rule: number;
  template: string;
  mode: PolicyMode;
}

function refSpecificity(template: string): string {
  if (template === '/') return '';
  return template
    .slice(1)
    .split('/')
    .map((s) => (s === '**' ? '2' : s.startsWith('{') ? '1' : '0'))
    .join('');
}

function refRegex(template: string): RegExp {
  if (template === '/') return /^\/$/;
  if (template === '/**') return /^\/.*$/;
  const parts = template.slice(1).split('/');
  const rest = parts[parts.length - 1] === '**';
  const fixed = (rest ? parts.slice(0, -1) : parts)
    .map((s) => (s.startsWith('{') ? '/[^/]+' : '/' + s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${fixed}${rest ? '(?:/.*)?' : ''}$`);
}

function refDecide(
  policies: ErpIntegrationPolicy[],
  method: string,
  target: string,
): Pick<Decision, 'allowed' | 'reason'> & { hit?: RefHit } {
  const norm = normalizeRequestTarget(target);
  if (!norm.ok) return { allowed: false, reason: A.InvalidPath };
  if (policies.length === 0) return { allowed: false, reason: A.NoPolicy };
  const best = (mode: PolicyMode): RefHit | undefined => {
    const hits: RefHit[] = [];
    for (const p of policies) {
      if ((p.spec.mode ?? 'Enforce') !== mode) continue;
      p.spec.rules.forEach((r, i) => {
        const methods = (r.methods ?? []).includes('*')
          ? ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']
          : (r.methods ?? []);
        if (!methods.includes(method)) return;
        for (const t of r.paths ?? []) {
          if (refRegex(t).test(norm.path)) {
            hits.push({
              key: refSpecificity(t),
              policy: `${p.metadata.namespace}/${p.metadata.name}`,
              rule: i,
              template: t,
              mode,
            });
          }
        }
      });
    }
    const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
    hits.sort(
      (a, b) =>
        cmp(a.key, b.key) ||
        cmp(a.policy, b.policy) ||
        a.rule - b.rule ||
        cmp(a.template, b.template),
    );
    return hits[0];
  };
  const hit = best('Enforce') ?? best('Audit');
  if (hit) return { allowed: true, reason: A.Allowed, hit };
  if (policies.some((p) => p.spec.mode === 'Audit'))
    return { allowed: true, reason: A.AuditWouldDeny };
  return { allowed: false, reason: A.NoMatchingRule };
}

describe('decide agrees with the linear-scan reference', () => {
  const literal = fc.constantFrom('a', 'b', 'c');
  const tseg = fc.oneof(literal, literal, fc.constantFrom('{x}', '{y}'));
  const template = fc
    .tuple(fc.array(tseg, { maxLength: 4 }), fc.boolean())
    .map(([segs, rest]) =>
      segs.length === 0 && !rest ? '/' : '/' + [...segs, ...(rest ? ['**'] : [])].join('/'),
    );
  const rule = fc.record({
    methods: fc.oneof(fc.subarray(['GET', 'POST'], { minLength: 1 }), fc.constant<string[]>(['*'])),
    paths: fc.array(template, { minLength: 1, maxLength: 3 }),
  });
  const policies = fc
    .array(
      fc.record({
        name: fc.constantFrom('p1', 'p2', 'p3', 'p4'),
        audit: fc.boolean(),
        rules: fc.array(rule, { minLength: 1, maxLength: 4 }),
      }),
      { maxLength: 5 },
    )
    .map((ps) =>
      ps.map((p, i) =>
        policy('erp', `${p.name}-${i}`, {
          source: { module: 'crm' },
          destination: { module: 'fin' },
          mode: p.audit ? 'Audit' : 'Enforce',
          rules: p.rules,
        }),
      ),
    );
  const request = fc.tuple(
    fc.constantFrom('GET', 'POST', 'PUT'),
    fc
      .array(fc.constantFrom('a', 'b', 'c', 'd', '%61'), { maxLength: 6 })
      .map((s) => '/' + s.join('/')),
  );

  it.each([
    ['determinised', undefined],
    ['trie walk', 1],
  ])('%s', (_name, maxStatesPerTable) => {
    fc.assert(
      fc.property(policies, fc.array(request, { minLength: 1, maxLength: 20 }), (ps, requests) => {
        const c: CompiledPolicySet = compilePolicies(
          ps,
          maxStatesPerTable === undefined ? {} : { maxStatesPerTable },
        );
        for (const [method, target] of requests) {
          const got = decide(c, 'fin', http('crm', method, target));
          const want = refDecide(ps, method, target);
          expect(got.reason).toBe(want.reason);
          expect(got.allowed).toBe(want.allowed);
          if (want.hit) {
            expect(got.matched).toEqual({
              policy: want.hit.policy,
              ruleIndex: want.hit.rule,
              mode: want.hit.mode,
            });
            expect(got.matchedTemplate).toBe(want.hit.template);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('decide is total', () => {
  const compiled = compilePolicies(POLICIES);
  const reasons = new Set<string>(Object.values(A));
  const str = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom(
      'GET',
      'crm',
      'erp',
      'finance',
      '/api/v1/customers/1',
      '/erp.finance.v1.Invoices/GetInvoice',
    ),
  );

  it('never throws and never allows an invalid target, for arbitrary strings', () => {
    fc.assert(
      fc.property(
        str,
        str,
        str,
        str,
        str,
        fc.boolean(),
        (method, target, module, ns, dest, isGrpc) => {
          const call: Call = isGrpc
            ? { kind: 'grpc', callerModule: module, callerNamespace: ns, path: target }
            : { kind: 'http', callerModule: module, callerNamespace: ns, method, target };
          const d = decide(compiled, dest, call);
          expect(reasons.has(d.reason)).toBe(true);
          expect(typeof d.message).toBe('string');
          if (d.allowed) expect([A.Allowed, A.AuditWouldDeny]).toContain(d.reason);
          if (!isGrpc && !normalizeRequestTarget(target).ok) expect(d.allowed).toBe(false);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
