import { afterEach, describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';

import { buildPolicy, withName } from '../../test/builders/policy.js';

import { AdminServer } from './admin-server.js';
import { createControllerMetrics } from './metrics.js';
import { VerifiedSet } from './verified-set.js';

let servers: AdminServer[] = [];
afterEach(async () => {
  for (const s of servers) await s.close();
  servers = [];
});

async function start(): Promise<{ admin: AdminServer; url: string; registry: Registry }> {
  const registry = new Registry();
  const admin = new AdminServer({ registry, port: 0 });
  servers.push(admin);
  const addr = await admin.listen();
  return { admin, url: `http://127.0.0.1:${addr.port}`, registry };
}

describe('AdminServer', () => {
  it('is healthy at once and ready only when every check passes', async () => {
    const { admin, url } = await start();
    let synced = false;
    admin.addReadinessCheck('caches', () => (synced ? undefined : 'policies not synced'));
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toContain('caches: policies not synced');
    synced = true;
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    admin.markShuttingDown();
    expect((await fetch(`${url}/readyz`)).status).toBe(503);
  });

  it('a throwing check makes it not ready instead of failing the request', async () => {
    const { admin, url } = await start();
    admin.addReadinessCheck('bad', () => {
      throw new Error('oops');
    });
    const res = await fetch(`${url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('bad: check failed: oops');
  });

  it('serves the controller metrics in Prometheus format', async () => {
    const { url, registry } = await start();
    const m = createControllerMetrics(registry);
    m.reconcileTotal.inc({ result: 'success' });
    m.leader.set(1);
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const body = await res.text();
    expect(body).toContain('erpguard_reconcile_total{result="success"} 1');
    expect(body).toContain('erpguard_leader 1');
    expect(body).toContain('erpguard_workqueue_depth');
    expect(body).toContain('erpguard_reconcile_duration_seconds_bucket');
  });

  it('answers unknown paths with 404 and other methods with 405', async () => {
    const { url } = await start();
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/healthz`, { method: 'POST' })).status).toBe(405);
  });
});

describe('VerifiedSet', () => {
  const p = buildPolicy(withName('a'));
  p.metadata.uid = 'u1';

  it('coalesces changes into one delivery and marks them published', async () => {
    const set = new VerifiedSet();
    const deliveries: string[][] = [];
    set.subscribe((ps) => deliveries.push(ps.map((x) => x.metadata.name)));
    expect(deliveries).toEqual([[]]);
    const b = buildPolicy(withName('b'));
    expect(set.set('erp/a', p, 'h1')).toBe(true);
    expect(set.set('erp/b', b, 'h2')).toBe(true);
    expect(set.set('erp/a', p, 'h1')).toBe(false); // same spec: nothing new for sidecars
    expect(set.isPublished('erp/a', p, 'h1')).toBe(false);
    await Promise.all([set.flush(), set.flush()]);
    expect(deliveries).toEqual([[], ['a', 'b']]);
    expect(set.isPublished('erp/a', p, 'h1')).toBe(true);
    expect(set.isPublished('erp/a', p, 'h-other')).toBe(false);
  });

  it('a throwing listener leaves the change unpublished until a delivery succeeds', async () => {
    const set = new VerifiedSet();
    let fail = true;
    set.subscribe(() => {
      if (fail) throw new Error('index broken');
    });
    set.set('erp/a', p, 'h1');
    await set.flush();
    expect(set.isPublished('erp/a', p, 'h1')).toBe(false);
    fail = false;
    await set.flush();
    expect(set.isPublished('erp/a', p, 'h1')).toBe(true);
  });

  it('reports size changes (metrics, NetworkPolicy sync)', () => {
    const sizes: number[] = [];
    const set = new VerifiedSet(undefined, (n) => sizes.push(n));
    set.set('erp/a', p, 'h1');
    set.set('erp/a', undefined);
    set.set('erp/a', undefined);
    expect(sizes).toEqual([1, 0]);
    expect(createControllerMetrics(new Registry()).verifiedPolicies).toBeDefined();
  });
});
