/**
 * The policy reconcile executor with in-memory ports: which writes and Events it makes, when it
 * makes none, and what non-leaders do.
 */
import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';

import {
  buildPolicy,
  withApproval,
  withLastAuthor,
  withName,
  withSpec,
} from '../../test/builders/policy.js';
import type { ErpIntegrationPolicy, ErpIntegrationPolicyStatus } from '../api/v1alpha1/index.js';
import type { WorkloadObject } from '../kube/resources.js';
import type { ApplyResult, EventInput, EventSubject, PolicyRef } from '../kube/writers.js';
import { specHash } from '../policy/hash.js';
import { silentLogger } from '../telemetry/logger.js';

import { createControllerMetrics } from './metrics.js';
import type { ControllerMetrics } from './metrics.js';
import { PolicyReconciler } from './policy-reconciler.js';
import type { EventSink, PolicyStore, StatusWriter } from './ports.js';
import { VerifiedSet } from './verified-set.js';
import { WorkloadIndex } from './workload-index.js';

const T0 = new Date('2026-12-01T10:00:00Z');
const reviewers = { groups: ['erp-reviewers'] };

class Store implements PolicyStore {
  readonly map = new Map<string, ErpIntegrationPolicy>();
  private rv = 100;
  put(p: ErpIntegrationPolicy): ErpIntegrationPolicy {
    this.rv += 1;
    const copy = structuredClone(p);
    copy.metadata.resourceVersion = String(this.rv);
    copy.metadata.uid ??= `uid-${p.metadata.name}`;
    copy.metadata.generation ??= 1;
    this.map.set(`${copy.metadata.namespace}/${copy.metadata.name}`, copy);
    return copy;
  }
  get(name: string, namespace?: string): ErpIntegrationPolicy | undefined {
    return this.map.get(`${namespace}/${name}`);
  }
  list(): readonly ErpIntegrationPolicy[] {
    return [...this.map.values()];
  }
}

class Writer implements StatusWriter {
  readonly writes: { ref: PolicyRef; status: ErpIntegrationPolicyStatus }[] = [];
  notFound = false;
  applyStatus(ref: PolicyRef, status: ErpIntegrationPolicyStatus): Promise<ApplyResult> {
    if (this.notFound) return Promise.resolve({ applied: false, reason: 'NotFound' });
    this.writes.push({ ref, status: structuredClone(status) });
    return Promise.resolve({ applied: true });
  }
}

class Events implements EventSink {
  readonly events: (EventInput & { about: string })[] = [];
  failing = false;
  record(subject: EventSubject, event: EventInput): Promise<void> {
    if (this.failing) return Promise.reject(new Error('events API down'));
    this.events.push({ ...event, about: subject.metadata.name });
    return Promise.resolve();
  }
}

interface Harness {
  store: Store;
  writer: Writer;
  events: Events;
  verified: VerifiedSet;
  metrics: ControllerMetrics;
  reconciler: PolicyReconciler;
  leader: { value: boolean };
  clock: { now: Date };
  workloads: WorkloadObject[];
}

function harness(): Harness {
  const store = new Store();
  const writer = new Writer();
  const events = new Events();
  const verified = new VerifiedSet();
  const metrics = createControllerMetrics(new Registry());
  const leader = { value: true };
  const clock = { now: T0 };
  const workloads: WorkloadObject[] = [];
  const reconciler = new PolicyReconciler({
    policies: store,
    status: writer,
    events,
    leader: { isLeader: () => leader.value },
    verified,
    workloads: new WorkloadIndex(() => workloads),
    reviewers,
    metrics,
    logger: silentLogger(),
    now: () => clock.now,
  });
  return { store, writer, events, verified, metrics, reconciler, leader, clock, workloads };
}

/** What the informer would deliver after our write. */
function echo(h: Harness, key: string): ErpIntegrationPolicy {
  const p = h.store.map.get(key) as ErpIntegrationPolicy;
  const last = h.writer.writes[h.writer.writes.length - 1];
  return h.store.put({ ...p, status: last?.status ?? {} });
}

const base = (): ErpIntegrationPolicy =>
  buildPolicy(withName('crm-reads-customers'), withLastAuthor('bob'));
const approvedFor = (p: ErpIntegrationPolicy, by = 'alice'): ErpIntegrationPolicy =>
  buildPolicy(
    withName('crm-reads-customers'),
    withLastAuthor('bob'),
    withSpec(p.spec),
    withApproval({
      by,
      groups: ['erp-reviewers'],
      at: '2026-11-30T00:00:00Z',
      specHash: specHash(p.spec),
    }),
  );
const KEY = 'erp/crm-reads-customers';
const cond = (s: ErpIntegrationPolicyStatus | undefined, type: string) =>
  s?.conditions?.find((c) => c.type === type);
const counterValue = async (
  m: ControllerMetrics,
  labels: Record<string, string>,
): Promise<number> =>
  (await m.writesSkipped.get()).values.find((v) => v.labels['kind'] === labels['kind'])?.value ?? 0;

describe('PolicyReconciler', () => {
  it('writes the first status with observedGeneration and emits one Event', async () => {
    const h = harness();
    h.store.put({ ...base(), metadata: { ...base().metadata, generation: 3 } });
    const result = await h.reconciler.reconcile(KEY);
    expect(h.writer.writes).toHaveLength(1);
    const status = h.writer.writes[0]?.status;
    expect(status?.observedGeneration).toBe(3);
    expect(status?.specHash).toBe(specHash(base().spec));
    expect(cond(status, 'Verified')).toMatchObject({
      status: 'False',
      reason: 'NotApproved',
      observedGeneration: 3,
    });
    expect(cond(status, 'Ready')).toMatchObject({ status: 'False', reason: 'NotVerified' });
    expect(h.events.events).toEqual([
      expect.objectContaining({
        type: 'Warning',
        reason: 'NotApproved',
        action: 'Verify',
        about: 'crm-reads-customers',
      }),
    ]);
    // validUntil 2027-06-30: requeued for then (capped at a day).
    expect(result.requeueAfterMs).toBe(24 * 3_600_000);
  });

  it('does not write or emit again while the cache has not caught up, nor after it has', async () => {
    const h = harness();
    h.store.put(base());
    await h.reconciler.reconcile(KEY);
    await h.reconciler.reconcile(KEY); // cache still shows no status
    expect(h.writer.writes).toHaveLength(1);
    expect(h.events.events).toHaveLength(1);
    echo(h, KEY);
    await h.reconciler.reconcile(KEY);
    expect(h.writer.writes).toHaveLength(1);
    expect(h.events.events).toHaveLength(1);
  });

  it('approval → Verified=True/Approved, published to listeners → Ready=True', async () => {
    const h = harness();
    const received: string[][] = [];
    h.verified.subscribe((ps) => received.push(ps.map((p) => p.metadata.name)));
    h.store.put(base());
    await h.reconciler.reconcile(KEY);
    echo(h, KEY);
    const prev = h.store.map.get(KEY)?.status;
    h.clock.now = new Date(T0.getTime() + 60_000);
    h.store.put({ ...approvedFor(base()), status: prev ?? {} });
    await h.reconciler.reconcile(KEY);
    const status = h.writer.writes[1]?.status;
    expect(cond(status, 'Verified')).toMatchObject({ status: 'True', reason: 'Approved' });
    expect(cond(status, 'Verified')?.lastTransitionTime).toBe(h.clock.now.toISOString());
    expect(cond(status, 'Ready')).toMatchObject({ status: 'True', reason: 'Ready' });
    expect(status?.approval).toMatchObject({ by: 'alice', specHash: specHash(base().spec) });
    expect(h.events.events.map((e) => `${e.type} ${e.reason}`)).toEqual([
      'Warning NotApproved',
      'Normal Approved',
    ]);
    expect(received[received.length - 1]).toEqual(['crm-reads-customers']);
  });

  it('without a listener a verified policy is Ready=False/Pending (nothing published)', async () => {
    const h = harness();
    h.store.put(approvedFor(base()));
    await h.reconciler.reconcile(KEY);
    const status = h.writer.writes[0]?.status;
    expect(cond(status, 'Verified')?.status).toBe('True');
    expect(cond(status, 'Ready')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('an approval of another spec hash is ApprovalVoided; lastTransitionTime stays while False', async () => {
    const h = harness();
    h.store.put(base());
    await h.reconciler.reconcile(KEY);
    const t1 = echo(h, KEY).status;
    // A wrong-hash approval: still False, other reason → transition time unchanged, but an Event.
    h.clock.now = new Date(T0.getTime() + 1_000);
    const wrong = approvedFor(buildPolicy(withSpec({ description: 'other' })));
    h.store.put({ ...wrong, spec: base().spec, status: t1 ?? {} });
    await h.reconciler.reconcile(KEY);
    const t2 = echo(h, KEY).status;
    expect(cond(t2, 'Verified')).toMatchObject({ status: 'False', reason: 'ApprovalVoided' });
    expect(cond(t2, 'Verified')?.lastTransitionTime).toBe(cond(t1, 'Verified')?.lastTransitionTime);
    expect(h.events.events.map((e) => e.reason)).toEqual(['NotApproved', 'ApprovalVoided']);
  });

  it('a non-leader updates the verified set but writes nothing and counts what it skipped', async () => {
    const h = harness();
    h.leader.value = false;
    h.store.put(approvedFor(base()));
    await h.reconciler.reconcile(KEY);
    expect(h.writer.writes).toHaveLength(0);
    expect(h.events.events).toHaveLength(0);
    expect(h.verified.has(KEY)).toBe(true);
    expect(await counterValue(h.metrics, { kind: 'status' })).toBe(1);
    expect(await counterValue(h.metrics, { kind: 'event' })).toBe(1);
  });

  it('requeues just after validUntil, and reports Expired then', async () => {
    const h = harness();
    const until = new Date(T0.getTime() + 5_000).toISOString();
    const spec = buildPolicy(withSpec({ validUntil: until })).spec;
    h.store.put(approvedFor(buildPolicy(withSpec(spec))));
    const r1 = await h.reconciler.reconcile(KEY);
    expect(r1.requeueAfterMs).toBe(5_050);
    expect(h.verified.has(KEY)).toBe(true);
    echo(h, KEY);
    h.clock.now = new Date(T0.getTime() + 5_050);
    const r2 = await h.reconciler.reconcile(KEY);
    expect(r2.requeueAfterMs).toBeUndefined();
    expect(cond(h.writer.writes[1]?.status, 'Verified')).toMatchObject({
      status: 'False',
      reason: 'Expired',
    });
    expect(h.verified.has(KEY)).toBe(false);
  });

  it('a deleted policy leaves the verified set and the listeners hear about it', async () => {
    const h = harness();
    const received: number[] = [];
    h.verified.subscribe((ps) => received.push(ps.length));
    h.store.put(approvedFor(base()));
    await h.reconciler.reconcile(KEY);
    h.store.map.delete(KEY);
    await h.reconciler.reconcile(KEY);
    expect(h.verified.has(KEY)).toBe(false);
    expect(received[received.length - 1]).toBe(0);
  });

  it('lists dependents: top-level workloads of the source module declaring the destination', async () => {
    const h = harness();
    const w = (
      kind: WorkloadObject['kind'],
      name: string,
      labels: Record<string, string>,
      integrations: string | undefined,
      extra: Partial<WorkloadObject['metadata']> = {},
    ): WorkloadObject => ({
      kind,
      metadata: { name, namespace: 'erp', ...extra },
      template: {
        labels,
        annotations: integrations === undefined ? {} : { 'erpguard.io/integrations': integrations },
      },
    });
    const crm = { 'erpguard.io/module': 'crm' };
    h.workloads.push(
      w('Deployment', 'crm-web', crm, 'inventory, finance'),
      w('CronJob', 'crm-sync', crm, 'finance'),
      w('Pod', 'crm-web-abc', crm, 'finance', {
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: 'crm-web-1',
            uid: 'x',
            controller: true,
          },
        ],
      }),
      w('Pod', 'crm-debug', crm, 'finance'),
      w('Deployment', 'crm-batch', crm, 'inventory'),
      w('Deployment', 'wms', { 'erpguard.io/module': 'wms' }, 'finance'),
    );
    h.store.put(base());
    await h.reconciler.reconcile(KEY);
    expect(h.writer.writes[0]?.status.dependents).toEqual([
      { kind: 'CronJob', name: 'crm-sync', namespace: 'erp' },
      { kind: 'Deployment', name: 'crm-web', namespace: 'erp' },
      { kind: 'Pod', name: 'crm-debug', namespace: 'erp' },
    ]);
  });

  it('emits no Event when the object vanished before the write, and survives a failing Event API', async () => {
    const h = harness();
    h.store.put(base());
    h.writer.notFound = true;
    await h.reconciler.reconcile(KEY);
    expect(h.events.events).toHaveLength(0);
    h.writer.notFound = false;
    h.events.failing = true;
    await expect(h.reconciler.reconcile(KEY)).resolves.toBeDefined();
    expect(h.writer.writes).toHaveLength(1);
  });

  it('ignores keys that are not namespace/name', async () => {
    const h = harness();
    await expect(h.reconciler.reconcile('no-slash')).resolves.toEqual({});
    expect(h.writer.writes).toHaveLength(0);
  });
});
