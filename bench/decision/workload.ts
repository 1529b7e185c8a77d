/**
 * Deterministic ERP workload for the decision benchmark: policies with realistic REST paths spread
 * over 100 destination modules, and a pre-generated list of calls (allowed and denied mixed).
 */
import {
  API_VERSION,
  KIND,
  type ErpIntegrationPolicy,
  type PolicyRule,
} from '../../pkg/api/v1alpha1/index.js';
import type { Call } from '../../pkg/policy/decision-types.js';

export const DESTINATIONS = 100;
const RULES_PER_POLICY = 5;
const CALLERS_PER_DESTINATION = 5;

const DOMAINS = [
  'finance',
  'crm',
  'wms',
  'bi',
  'hr',
  'inventory',
  'procurement',
  'sales',
  'payroll',
  'ledger',
];
export const MODULES = Array.from(
  { length: DESTINATIONS },
  (_, i) => `${DOMAINS[i % DOMAINS.length] ?? 'erp'}-${Math.floor(i / DOMAINS.length)}`,
);

const RESOURCES = [
  'customers',
  'invoices',
  'orders',
  'sales-orders',
  'purchase-orders',
  'products',
  'suppliers',
  'payments',
  'ledgers',
  'accounts',
  'journal-entries',
  'shipments',
  'warehouses',
  'stock-levels',
  'employees',
  'payroll-runs',
  'cost-centers',
  'quotes',
  'contracts',
  'assets',
  'tax-codes',
  'currencies',
  'exchange-rates',
  'budgets',
  'reports',
  'credit-notes',
  'deliveries',
  'returns',
  'price-lists',
  'bank-statements',
  'dunning-runs',
  'projects',
  'timesheets',
  'vendors',
  'items',
  'bins',
  'pick-lists',
  'carriers',
  'opportunities',
  'leads',
];
const SUBRESOURCES = [
  'invoices',
  'lines',
  'payments',
  'addresses',
  'contacts',
  'notes',
  'attachments',
  'history',
  'approvals',
  'allocations',
  'documents',
  'status',
  'items',
  'reservations',
  'balances',
];

/** Small seeded PRNG (mulberry32): the same workload on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(r: () => number, items: readonly T[]): T {
  const item = items[Math.floor(r() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function ruleFor(r: () => number): PolicyRule {
  const version = r() < 0.8 ? 'v1' : 'v2';
  const res = pick(r, RESOURCES);
  const sub = pick(r, SUBRESOURCES);
  const base = `/api/${version}/${res}`;
  const shape = r();
  if (shape < 0.25) return { methods: ['GET'], paths: [base, `${base}/{id}`] };
  if (shape < 0.45) return { methods: ['GET', 'POST'], paths: [`${base}/{id}/${sub}`] };
  if (shape < 0.6) return { methods: ['PUT', 'PATCH', 'DELETE'], paths: [`${base}/{id}`] };
  if (shape < 0.75) return { methods: ['GET'], paths: [`${base}/{id}/${sub}/{subId}`] };
  if (shape < 0.85) return { methods: ['POST'], paths: [base, `${base}/{id}/${sub}`] };
  if (shape < 0.92) return { methods: ['GET'], paths: [`${base}/**`] };
  return {
    grpc: {
      service: `erp.${res.replace(/-/g, '')}.v1.Service`,
      methods: [r() < 0.5 ? '*' : 'Get'],
    },
  };
}

export interface Workload {
  policies: ErpIntegrationPolicy[];
  calls: { destination: string; call: Call }[];
}

/** `rules` rules over 100 destinations (rule j goes to destination j mod 100). */
export function makeWorkload(rules: number, calls: number, seed = 42): Workload {
  const r = rng(seed + rules);
  const perDestination: PolicyRule[][] = Array.from({ length: DESTINATIONS }, () => []);
  for (let j = 0; j < rules; j++) perDestination[j % DESTINATIONS]?.push(ruleFor(r));

  const policies: ErpIntegrationPolicy[] = [];
  perDestination.forEach((destRules, d) => {
    const destination = MODULES[d] ?? 'erp';
    for (let k = 0; k * RULES_PER_POLICY < destRules.length; k++) {
      const caller = MODULES[(d + 1 + (k % CALLERS_PER_DESTINATION)) % DESTINATIONS] ?? 'erp';
      policies.push({
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name: `${caller}-to-${destination}-${k}`, namespace: 'erp' },
        spec: {
          source: { module: caller },
          destination: { module: destination },
          mode: policies.length % 10 === 9 ? 'Audit' : 'Enforce',
          rules: destRules.slice(k * RULES_PER_POLICY, (k + 1) * RULES_PER_POLICY),
          rateLimit: { requestsPerSecond: 50, burst: 100 },
          dataProtection: { mask: ['$.items[*].iban'] },
          validUntil: '2027-06-30T00:00:00Z',
        },
      });
    }
  });

  const out: Workload['calls'] = [];
  const id = (): string => `C-${Math.floor(r() * 1_000_000)}`;
  const instantiate = (template: string): string =>
    template
      .replace(/\{[^}]+\}/g, id)
      .replace(
        /\/\*\*$/,
        () => ['', '/lines', `/lines/${id()}/history`][Math.floor(r() * 3)] ?? '',
      );
  const http = (caller: string, method: string, target: string): Call => ({
    kind: 'http',
    callerModule: caller,
    callerNamespace: 'erp',
    method,
    target,
  });
  while (out.length < calls) {
    const p = pick(r, policies);
    const destination = p.spec.destination.module;
    const caller = p.spec.source.module;
    const rule = pick(r, p.spec.rules);
    const kind = r();
    if (rule.grpc !== undefined) {
      const method = rule.grpc.methods[0] === '*' ? 'List' : 'Get';
      const path = `/${rule.grpc.service}/${kind < 0.7 ? method : 'Delete'}`;
      out.push({
        destination,
        call: { kind: 'grpc', callerModule: caller, callerNamespace: 'erp', path },
      });
      continue;
    }
    const template = pick(r, rule.paths ?? ['/']);
    const path = instantiate(template);
    const method = pick(r, rule.methods ?? ['GET']);
    let call: Call;
    if (kind < 0.5) call = http(caller, method, r() < 0.2 ? `${path}?expand=lines&limit=50` : path);
    else if (kind < 0.65) call = http(caller, method === 'DELETE' ? 'POST' : 'DELETE', path);
    else if (kind < 0.8) call = http(caller, 'GET', `${path}/export-all`);
    else if (kind < 0.9) call = http(pick(r, MODULES), method, path);
    else {
      const bad = ['/..', '%2F..%2Fadmin', '//x', ';jsessionid=1', '/%2e%2e/payroll-runs'];
      call = http(caller, method, path + pick(r, bad));
    }
    out.push({ destination, call });
  }
  return { policies, calls: out };
}
