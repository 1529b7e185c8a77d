/**
 * NetworkPolicy sync with in-memory ports: applies what is missing or drifted, deletes what is
 * no longer wanted, leaves foreign objects alone, and writes nothing when not leader.
 */
import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';

import { buildPolicy, withModules, withName } from '../../test/builders/policy.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import type { NetworkPolicyObject, ObjectMetaLite, WorkloadObject } from '../kube/resources.js';
import type { NetworkPolicyManifest } from '../kube/writers.js';
import { silentLogger } from '../telemetry/logger.js';

import { createControllerMetrics } from './metrics.js';
import { NetworkPolicySync } from './network-policy-sync.js';
import type { NetworkPolicyClient } from './ports.js';
import { VerifiedSet } from './verified-set.js';
import { WorkloadIndex } from './workload-index.js';

class Cluster implements NetworkPolicyClient {
  /** Every NetworkPolicy in the "cluster", managed or not. */
  readonly objects = new Map<string, NetworkPolicyObject>();
  readonly ops: string[] = [];
  private uid = 0;
  read(namespace: string, name: string): Promise<ObjectMetaLite | null> {
    return Promise.resolve(this.objects.get(`${namespace}/${name}`)?.metadata ?? null);
  }
  apply(m: NetworkPolicyManifest): Promise<void> {
    const k = `${m.metadata.namespace}/${m.metadata.name}`;
    this.ops.push(`apply ${k}`);
    this.uid += 1;
    this.objects.set(k, {
      kind: 'NetworkPolicy',
      metadata: { ...m.metadata, uid: this.objects.get(k)?.metadata.uid ?? `np-${this.uid}` },
      spec: JSON.parse(JSON.stringify(m.spec)) as Record<string, unknown>,
    });
    return Promise.resolve();
  }
  delete(namespace: string, name: string): Promise<void> {
    this.ops.push(`delete ${namespace}/${name}`);
    this.objects.delete(`${namespace}/${name}`);
    return Promise.resolve();
  }
  /** What the managed-by informer would hold. */
  managed(): NetworkPolicyObject[] {
    return [...this.objects.values()].filter(
      (o) => o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'erpguard',
    );
  }
}

function setup(): {
  sync: NetworkPolicySync;
  cluster: Cluster;
  policies: ErpIntegrationPolicy[];
  verified: VerifiedSet;
  leader: { value: boolean };
  workloads: WorkloadObject[];
  registry: Registry;
} {
  const cluster = new Cluster();
  const policies: ErpIntegrationPolicy[] = [];
  const verified = new VerifiedSet();
  const leader = { value: true };
  const workloads: WorkloadObject[] = [];
  const registry = new Registry();
  const sync = new NetworkPolicySync({
    policies: { get: () => undefined, list: () => policies },
    namespaces: {
      list: () => [
        { metadata: { name: 'erp', labels: { 'erpguard.io/enforce': 'true' } } },
        { metadata: { name: 'erpguard', labels: { 'erpguard.io/enforce': 'true' } } },
      ],
    },
    workloads: new WorkloadIndex(() => workloads),
    verified,
    live: { list: () => cluster.managed() },
    client: cluster,
    leader: { isLeader: () => leader.value },
    metrics: createControllerMetrics(registry),
    logger: silentLogger(),
    options: { ownNamespace: 'erpguard' },
  });
  return { sync, cluster, policies, verified, leader, workloads, registry };
}

const p1 = buildPolicy(withName('crm-to-finance'), withModules('crm', 'finance'));

describe('NetworkPolicySync', () => {
  it('creates deny-all first, opens on verification, closes again, and is idempotent', async () => {
    const s = setup();
    s.policies.push(p1);
    expect(await s.sync.sync()).toMatchObject({ applied: 2, deleted: 0 });
    expect(s.cluster.objects.get('erp/erpguard-finance')?.spec['ingress']).toBeUndefined();

    s.verified.set('erp/crm-to-finance', p1, 'h1');
    expect(await s.sync.sync()).toMatchObject({ applied: 1, unchanged: 1 });
    expect(JSON.stringify(s.cluster.objects.get('erp/erpguard-finance')?.spec)).toContain('"crm"');

    expect(await s.sync.sync()).toMatchObject({ applied: 0, deleted: 0, unchanged: 2 });

    s.verified.set('erp/crm-to-finance', undefined);
    await s.sync.sync();
    expect(s.cluster.objects.get('erp/erpguard-finance')?.spec['ingress']).toBeUndefined();
  });

  it('deletes managed NetworkPolicies that are no longer wanted', async () => {
    const s = setup();
    s.policies.push(p1);
    await s.sync.sync();
    s.policies.length = 0;
    expect(await s.sync.sync()).toMatchObject({ deleted: 2 });
    expect(s.cluster.objects.size).toBe(0);
  });

  it('repairs a hand-edited managed NetworkPolicy', async () => {
    const s = setup();
    s.policies.push(p1);
    await s.sync.sync();
    const np = s.cluster.objects.get('erp/erpguard-finance');
    if (np) np.spec['ingress'] = [{ ports: [{ protocol: 'TCP', port: 8080 }] }];
    s.cluster.ops.length = 0;
    await s.sync.sync();
    expect(s.cluster.ops).toEqual(['apply erp/erpguard-finance']);
    expect(s.cluster.objects.get('erp/erpguard-finance')?.spec['ingress']).toBeUndefined();
  });

  it('never touches a same-named NetworkPolicy that someone else owns', async () => {
    const s = setup();
    s.cluster.objects.set('erp/erpguard-finance', {
      kind: 'NetworkPolicy',
      metadata: { name: 'erpguard-finance', namespace: 'erp', labels: { team: 'finance' } },
      spec: { podSelector: {} },
    });
    s.policies.push(p1);
    expect(await s.sync.sync()).toMatchObject({ applied: 1, nameTaken: 1 });
    expect(s.cluster.objects.get('erp/erpguard-finance')?.metadata.labels).toEqual({
      team: 'finance',
    });
  });

  it('a non-leader writes nothing and counts the skipped writes', async () => {
    const s = setup();
    s.leader.value = false;
    s.policies.push(p1);
    expect(await s.sync.sync()).toMatchObject({ skippedNotLeader: true, applied: 0 });
    expect(s.cluster.ops).toEqual([]);
    expect(
      await s.registry.getSingleMetricAsString('erpguard_leader_writes_skipped_total'),
    ).toContain('kind="networkpolicy"} 2');
  });

  it('modules seen only on workloads get deny-all too', async () => {
    const s = setup();
    s.workloads.push({
      kind: 'Deployment',
      metadata: { name: 'bi', namespace: 'erp' },
      template: { labels: { 'erpguard.io/module': 'bi' }, annotations: {} },
    });
    await s.sync.sync();
    expect([...s.cluster.objects.keys()]).toEqual(['erp/erpguard-bi']);
  });
});
