import { describe, expect, it } from '@jest/globals';

import { buildPolicy, withModules, withName, withSpec } from '../../test/builders/policy.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';

import {
  inNetworkPolicyScope,
  networkPolicySpecEquals,
  planNetworkPolicies,
} from './network-policy.js';
import type {
  DesiredNetworkPolicy,
  NamespaceLabels,
  NetworkPolicyPlanInput,
  NetworkPolicySpec,
  PolicyVerdict,
} from './network-policy.js';

const enforced = (name: string): NamespaceLabels => ({
  name,
  labels: { 'erpguard.io/enforce': 'true', 'kubernetes.io/metadata.name': name },
});
const ns = (name: string, labels: Record<string, string> = {}): NamespaceLabels => ({
  name,
  labels: { ...labels, 'kubernetes.io/metadata.name': name },
});

const policy = (
  name: string,
  src: string,
  dst: string,
  opts: { namespace?: string; sourceNamespace?: string } = {},
): ErpIntegrationPolicy =>
  buildPolicy(withName(name, opts.namespace ?? 'erp'), withModules(src, dst), (p) => {
    if (opts.sourceNamespace !== undefined) p.spec.source.namespace = opts.sourceNamespace;
  });

const verified = (p: ErpIntegrationPolicy): PolicyVerdict => ({ policy: p, verified: true });
const unverified = (p: ErpIntegrationPolicy): PolicyVerdict => ({ policy: p, verified: false });

function plan(partial: Partial<NetworkPolicyPlanInput>): DesiredNetworkPolicy[] {
  return planNetworkPolicies({
    policies: [],
    namespaces: [enforced('erp')],
    workloadModules: [],
    ...partial,
  });
}

/** name → summary: "deny" or the sorted list of allowed "ns/module" sources on 15443. */
function summary(nps: DesiredNetworkPolicy[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const np of nps) {
    const rule = np.spec.ingress?.find((r) => r.ports.some((p) => p.port === 15443));
    const sources =
      rule?.from.flatMap((peer) => {
        const peerNs =
          peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] ??
          np.metadata.namespace;
        return (peer.podSelector?.matchExpressions?.[0]?.values ?? []).map((m) => `${peerNs}/${m}`);
      }) ?? [];
    out[`${np.metadata.namespace}/${np.metadata.name}`] =
      sources.length === 0 ? 'deny' : sources.sort().join(',');
  }
  return out;
}

describe('planNetworkPolicies', () => {
  const cases: {
    name: string;
    input: Partial<NetworkPolicyPlanInput>;
    want: Record<string, string>;
  }[] = [
    {
      name: 'nothing known: no NetworkPolicies',
      input: {},
      want: {},
    },
    {
      name: 'a verified policy opens the destination to its source; the source itself is denied',
      input: { policies: [verified(policy('p1', 'crm', 'finance'))] },
      want: { 'erp/erpguard-crm': 'deny', 'erp/erpguard-finance': 'erp/crm' },
    },
    {
      name: 'an unverified policy opens nothing (fail closed)',
      input: { policies: [unverified(policy('p1', 'crm', 'finance'))] },
      want: { 'erp/erpguard-crm': 'deny', 'erp/erpguard-finance': 'deny' },
    },
    {
      name: 'several verified sources are merged into one peer per namespace',
      input: {
        policies: [
          verified(policy('p1', 'wms', 'finance')),
          verified(policy('p2', 'crm', 'finance')),
          unverified(policy('p3', 'bi', 'finance')),
          verified(policy('p4', 'crm', 'finance')), // duplicate edge
        ],
      },
      want: {
        'erp/erpguard-bi': 'deny',
        'erp/erpguard-crm': 'deny',
        'erp/erpguard-finance': 'erp/crm,erp/wms',
        'erp/erpguard-wms': 'deny',
      },
    },
    {
      name: 'a module known only from workloads gets deny-all',
      input: { workloadModules: [{ namespace: 'erp', module: 'inventory' }] },
      want: { 'erp/erpguard-inventory': 'deny' },
    },
    {
      name: 'cross-namespace sources are matched by namespace name',
      input: {
        namespaces: [enforced('erp'), enforced('sales')],
        policies: [verified(policy('p1', 'crm', 'finance', { sourceNamespace: 'sales' }))],
      },
      want: { 'erp/erpguard-finance': 'sales/crm', 'sales/erpguard-crm': 'deny' },
    },
    {
      name: 'a source namespace out of scope gets no NetworkPolicy but is still allowed in',
      input: {
        namespaces: [enforced('erp'), ns('legacy')],
        policies: [verified(policy('p1', 'crm', 'finance', { sourceNamespace: 'legacy' }))],
        workloadModules: [{ namespace: 'legacy', module: 'crm' }],
      },
      want: { 'erp/erpguard-finance': 'legacy/crm' },
    },
    {
      name: 'audit, unlabelled, system and own namespaces are never touched',
      input: {
        namespaces: [
          ns('audited', { 'erpguard.io/enforce': 'audit' }),
          ns('plain'),
          { name: 'kube-system', labels: { 'erpguard.io/enforce': 'true' } },
          enforced('erpguard-system'),
        ],
        ownNamespace: 'erpguard-system',
        policies: [
          verified(policy('p1', 'crm', 'finance', { namespace: 'audited' })),
          verified(policy('p2', 'crm', 'finance', { namespace: 'plain' })),
          verified(policy('p3', 'crm', 'finance', { namespace: 'kube-system' })),
          verified(policy('p4', 'crm', 'finance', { namespace: 'erpguard-system' })),
        ],
        workloadModules: [{ namespace: 'kube-system', module: 'dns' }],
      },
      want: {},
    },
    {
      name: 'a namespace the cache does not know is out of scope',
      input: { namespaces: [], policies: [verified(policy('p1', 'crm', 'finance'))] },
      want: {},
    },
    {
      name: 'malformed and terminating policies cover nothing',
      input: {
        policies: [
          verified(buildPolicy(withModules('crm', 'Finance'))),
          verified(
            buildPolicy(withName('p2'), withModules('crm', 'finance'), (p) => {
              (p.spec as unknown as Record<string, unknown>)['source'] = 'crm';
            }),
          ),
          verified(
            buildPolicy(withName('p3'), withModules('wms', 'finance'), (p) => {
              p.metadata.deletionTimestamp = '2026-12-01T00:00:00Z';
            }),
          ),
        ],
        workloadModules: [{ namespace: 'erp', module: 'finance' }],
      },
      want: { 'erp/erpguard-finance': 'deny' },
    },
    {
      name: 'Audit-mode policies open the network too (the sidecar audits instead of blocking)',
      input: {
        policies: [
          verified(buildPolicy(withModules('crm', 'finance'), withSpec({ mode: 'Audit' }))),
        ],
      },
      want: { 'erp/erpguard-crm': 'deny', 'erp/erpguard-finance': 'erp/crm' },
    },
  ];

  it.each(cases)('$name', ({ input, want }) => {
    expect(summary(plan(input))).toEqual(want);
  });

  it('selects the module pods, admits only TCP 15443, and labels the object as managed', () => {
    const [np] = plan({ policies: [verified(policy('p1', 'crm', 'finance'))] }).filter(
      (n) => n.metadata.name === 'erpguard-finance',
    );
    expect(np).toEqual({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: {
        name: 'erpguard-finance',
        namespace: 'erp',
        labels: { 'app.kubernetes.io/managed-by': 'erpguard' },
      },
      spec: {
        podSelector: { matchLabels: { 'erpguard.io/module': 'finance' } },
        policyTypes: ['Ingress'],
        ingress: [
          {
            ports: [{ protocol: 'TCP', port: 15443 }],
            from: [
              {
                podSelector: {
                  matchExpressions: [
                    { key: 'erpguard.io/module', operator: 'In', values: ['crm'] },
                  ],
                },
              },
            ],
          },
        ],
      },
    });
  });

  it('deny-all has no ingress rules at all', () => {
    const [np] = plan({ workloadModules: [{ namespace: 'erp', module: 'bi' }] });
    expect(np?.spec).toEqual({
      podSelector: { matchLabels: { 'erpguard.io/module': 'bi' } },
      policyTypes: ['Ingress'],
    });
  });

  it('adds the admin port only for the configured namespaces, also to deny-all policies', () => {
    const nps = plan({
      workloadModules: [{ namespace: 'erp', module: 'bi' }],
      adminIngressNamespaces: ['monitoring', 'monitoring', 'Not A Name'],
    });
    expect(nps[0]?.spec.ingress).toEqual([
      {
        ports: [{ protocol: 'TCP', port: 15020 }],
        from: [
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } },
        ],
      },
    ]);
  });

  it('is deterministic whatever the input order', () => {
    const policies = [
      verified(policy('a', 'wms', 'finance')),
      verified(policy('b', 'crm', 'finance', { sourceNamespace: 'sales' })),
      verified(policy('c', 'bi', 'finance')),
      verified(policy('d', 'crm', 'inventory')),
    ];
    const namespaces = [enforced('sales'), enforced('erp')];
    const one = plan({ policies, namespaces });
    const two = plan({ policies: [...policies].reverse(), namespaces: [...namespaces].reverse() });
    expect(JSON.stringify(two)).toBe(JSON.stringify(one));
    expect(one.map((n) => `${n.metadata.namespace}/${n.metadata.name}`)).toEqual([
      'erp/erpguard-bi',
      'erp/erpguard-crm',
      'erp/erpguard-finance',
      'erp/erpguard-inventory',
      'erp/erpguard-wms',
      'sales/erpguard-crm',
    ]);
  });
});

describe('inNetworkPolicyScope', () => {
  it.each([
    [ns('erp', { 'erpguard.io/enforce': 'true' }), undefined, true],
    [ns('erp', { 'erpguard.io/enforce': 'True' }), undefined, false],
    [ns('erp', { 'erpguard.io/enforce': 'audit' }), undefined, false],
    [ns('erp'), undefined, false],
    [ns('kube-public', { 'erpguard.io/enforce': 'true' }), undefined, false],
    [ns('erpguard', { 'erpguard.io/enforce': 'true' }), 'erpguard', false],
  ])('%j (own namespace %s) → %s', (namespace, own, want) => {
    expect(inNetworkPolicyScope(namespace, own)).toBe(want);
  });
});

describe('networkPolicySpecEquals', () => {
  const [desired] = plan({ policies: [verified(policy('p1', 'crm', 'finance'))] }).filter(
    (n) => n.metadata.name === 'erpguard-finance',
  );
  const spec = desired?.spec ?? { podSelector: {}, policyTypes: ['Ingress'] as ['Ingress'] };

  it('ignores key order and undefined members (typed client objects)', () => {
    const live = JSON.parse(JSON.stringify(spec)) as Record<string, unknown>;
    const reordered = {
      ingress: live['ingress'],
      policyTypes: live['policyTypes'],
      podSelector: live['podSelector'],
      egress: undefined,
    };
    expect(networkPolicySpecEquals(reordered, spec)).toBe(true);
  });

  it('treats an empty ingress list as deny-all', () => {
    const deny: NetworkPolicySpec = {
      podSelector: { matchLabels: { 'erpguard.io/module': 'bi' } },
      policyTypes: ['Ingress'],
    };
    expect(networkPolicySpecEquals({ ...deny, ingress: [] }, deny)).toBe(true);
  });

  it('sees a hand-edited rule (an extra port) as a difference to repair', () => {
    const live = JSON.parse(JSON.stringify(spec)) as { ingress: { ports: unknown[] }[] };
    live.ingress[0]?.ports.push({ protocol: 'TCP', port: 8080 });
    expect(networkPolicySpecEquals(live, spec)).toBe(false);
    expect(networkPolicySpecEquals(undefined, spec)).toBe(false);
  });
});
