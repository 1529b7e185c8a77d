/**
 * The supervisor around client-node's real informer, against a small API-server stand-in on
 * 127.0.0.1 that serves watch streams the way kube-apiserver does (chunked JSON lines). The
 * list function is ours, so failures are injected exactly.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { KubeConfig } from '@kubernetes/client-node';

import { backoffDelay } from './backoff.js';
import { SupervisedInformer } from './informer.js';
import type { ListResult } from './informer.js';

interface Obj {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    managedFields?: unknown[];
  };
  data?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await sleep(5);
  }
}

/** Watch endpoint: records each watch request; the test pushes events or fails requests. */
class FakeWatchServer {
  readonly server: Server;
  readonly requests: URL[] = [];
  private streams: ServerResponse[] = [];
  /** Status codes for the next watch requests (then 200). */
  failNext: number[] = [];

  constructor() {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://x');
      this.requests.push(url);
      const fail = this.failNext.shift();
      if (fail !== undefined) {
        res.writeHead(fail, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', code: fail, message: 'injected' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      this.streams.push(res);
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get open(): number {
    return this.streams.filter((s) => !s.destroyed && !s.writableEnded).length;
  }

  push(type: string, object: Obj): void {
    for (const s of this.streams)
      if (!s.destroyed) s.write(`${JSON.stringify({ type, object })}\n`);
  }

  /** Cuts every open watch connection without a clean end (a network failure). */
  breakAll(): void {
    for (const s of this.streams) s.socket?.destroy();
    this.streams = [];
  }

  async close(): Promise<void> {
    this.breakAll();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function kubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'test' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
    currentContext: 'fake',
  });
  return kc;
}

const obj = (name: string, rv: string, data = ''): Obj => ({
  metadata: {
    name,
    namespace: 'erp',
    resourceVersion: rv,
    managedFields: [{ manager: 'kubectl' }],
  },
  data,
});

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(listFn: () => Promise<ListResult<Obj>>): Promise<{
  fake: FakeWatchServer;
  informer: SupervisedInformer<Obj>;
  restarts: { attempt: number; delayMs: number; error: unknown }[];
}> {
  const fake = new FakeWatchServer();
  const url = await fake.listen();
  const restarts: { attempt: number; delayMs: number; error: unknown }[] = [];
  const informer = new SupervisedInformer<Obj>({
    name: 'things',
    kubeConfig: kubeConfig(url),
    path: '/api/v1/things',
    list: listFn,
    backoff: { baseMs: 10, maxMs: 80, jitter: 0 },
    random: () => 0.5,
    onRestart: (info) => restarts.push(info),
  });
  cleanup.push(async () => {
    await informer.stop();
    await fake.close();
  });
  return { fake, informer, restarts };
}

describe('SupervisedInformer', () => {
  it('restarts a failing list with exponential backoff and syncs once it succeeds', async () => {
    let calls = 0;
    const { informer, restarts, fake } = await setup(() => {
      calls += 1;
      if (calls <= 4) return Promise.reject(Object.assign(new Error('boom'), { code: 503 }));
      return Promise.resolve({
        items: [obj('a', '5'), obj('b', '6')],
        metadata: { resourceVersion: '6' },
      });
    });
    const added: string[] = [];
    informer.on({ add: (o) => added.push(o.metadata.name) });
    informer.start();
    await informer.synced;
    expect(calls).toBe(5);
    expect(restarts.map((r) => r.delayMs)).toEqual([10, 20, 40, 80]);
    expect(restarts.map((r) => r.attempt)).toEqual([0, 1, 2, 3]);
    expect(informer.restarts).toBe(4);
    expect(informer.hasSynced()).toBe(true);
    expect(added.sort()).toEqual(['a', 'b']);
    expect(
      informer
        .list()
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['a', 'b']);
    // managedFields never reach the cache.
    expect(informer.get('a', 'erp')?.metadata.managedFields).toBeUndefined();
    // The watch starts from the list's resourceVersion.
    await until(() => fake.requests.length === 1);
    expect(fake.requests[0]?.searchParams.get('watch')).toBe('true');
    expect(fake.requests[0]?.searchParams.get('resourceVersion')).toBe('6');
  });

  it('is not synced while the list keeps failing', async () => {
    const { informer } = await setup(() => Promise.reject(new Error('forbidden')));
    informer.start();
    await sleep(100);
    expect(informer.hasSynced()).toBe(false);
    expect(informer.restarts).toBeGreaterThan(1);
    expect(informer.lastFailure).toBeInstanceOf(Error);
  });

  it('applies watch events, and resumes from the last resourceVersion after the watch breaks', async () => {
    const { informer, fake, restarts } = await setup(() =>
      Promise.resolve({ items: [obj('a', '5')], metadata: { resourceVersion: '5' } }),
    );
    const seen: string[] = [];
    informer.on({
      add: (o) => seen.push(`add ${o.metadata.name}`),
      update: (o) => seen.push(`update ${o.metadata.name} ${o.data ?? ''}`),
      delete: (o) => seen.push(`delete ${o.metadata.name}`),
    });
    informer.start();
    await informer.synced;
    await until(() => fake.open === 1);
    fake.push('ADDED', obj('b', '7'));
    fake.push('MODIFIED', obj('a', '8', 'v2'));
    await until(() => seen.length === 3);
    expect(informer.get('a', 'erp')?.data).toBe('v2');
    expect(informer.get('b', 'erp')?.metadata.managedFields).toBeUndefined();

    // The next watch request fails with a 500: client-node emits 'error' and stops; the
    // supervisor restarts it with backoff, from resourceVersion 8 (no relist).
    fake.failNext = [500];
    fake.breakAll();
    await until(() => fake.open === 1);
    expect(restarts.length).toBeGreaterThanOrEqual(1);
    const last = fake.requests[fake.requests.length - 1];
    expect(last?.searchParams.get('resourceVersion')).toBe('8');
    fake.push('DELETED', obj('b', '9'));
    await until(() => seen.includes('delete b'));
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['a']);
  });

  it('keeps going when a handler throws', async () => {
    const { informer, fake } = await setup(() =>
      Promise.resolve({ items: [], metadata: { resourceVersion: '1' } }),
    );
    const seen: string[] = [];
    informer.on({
      add: () => {
        throw new Error('handler bug');
      },
    });
    informer.on({ add: (o) => seen.push(o.metadata.name) });
    informer.start();
    await informer.synced;
    await until(() => fake.open === 1);
    fake.push('ADDED', obj('x', '2'));
    fake.push('ADDED', obj('y', '3'));
    await until(() => seen.length === 2);
    expect(informer.list()).toHaveLength(2);
  });

  it('stops restarting after stop()', async () => {
    let calls = 0;
    const { informer } = await setup(() => {
      calls += 1;
      return Promise.reject(new Error('down'));
    });
    informer.start();
    await until(() => calls >= 2);
    await informer.stop();
    const after = calls;
    await sleep(150);
    expect(calls).toBe(after);
  });
});

describe('backoffDelay', () => {
  it.each([
    [0, 0, 100],
    [1, 0, 200],
    [5, 0, 3_200],
    [6, 0, 5_000], // capped
    [60, 0, 5_000],
    [1_000, 0, 5_000], // no overflow
  ])('attempt %d (random %d) → %d ms without jitter', (attempt, random, want) => {
    expect(backoffDelay(attempt, { baseMs: 100, maxMs: 5_000, jitter: 0 }, () => random)).toBe(
      want,
    );
  });

  it('jitters within [delay * (1 - jitter), delay]', () => {
    const opts = { baseMs: 1_000, maxMs: 60_000, jitter: 0.5 };
    expect(backoffDelay(2, opts, () => 0)).toBe(2_000);
    expect(backoffDelay(2, opts, () => 0.999999)).toBe(4_000);
    expect(backoffDelay(2, opts, () => 0.5)).toBe(3_000);
  });
});
