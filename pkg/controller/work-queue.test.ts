import { describe, expect, it } from '@jest/globals';

import { ErpguardError, ErrorCode } from '../errors/errors.js';

import { isRetryable, WorkQueue } from './work-queue.js';
import type { Outcome, ReconcileHandler, WorkQueueOptions } from './work-queue.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when `cond()` holds; polls, so it fails by timeout rather than by a timing assertion. */
async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await sleep(2);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const fast: WorkQueueOptions = {
  backoff: { baseMs: 5, maxMs: 40, jitter: 0 },
  retryRateLimit: { perSecond: 10_000, burst: 10_000 },
  random: () => 0.5,
};

describe('WorkQueue', () => {
  it('deduplicates a key that is added many times while waiting', async () => {
    const runs: string[] = [];
    const q = new WorkQueue((key) => {
      runs.push(key);
      return Promise.resolve();
    }, fast);
    for (let i = 0; i < 5; i++) q.add('erp/a');
    q.add('erp/b');
    expect(q.depth).toBe(2);
    q.start();
    await until(() => runs.length === 2);
    await sleep(20);
    expect(runs.sort()).toEqual(['erp/a', 'erp/b']);
  });

  it('never runs one key twice at once, and reruns it once if it changed meanwhile', async () => {
    let concurrent = 0;
    let maxConcurrent = 0;
    let runs = 0;
    const gate = deferred();
    const q = new WorkQueue(
      async () => {
        runs += 1;
        concurrent += 1;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        if (runs === 1) await gate.promise;
        concurrent -= 1;
      },
      { ...fast, workers: 4 },
    );
    q.start();
    q.add('k');
    await until(() => runs === 1);
    q.add('k');
    q.add('k');
    await sleep(10);
    expect(runs).toBe(1); // still blocked on the first run
    gate.resolve();
    await until(() => runs === 2);
    await sleep(20);
    expect(runs).toBe(2);
    expect(maxConcurrent).toBe(1);
  });

  it('processes different keys in parallel up to the worker count', async () => {
    let concurrent = 0;
    let maxConcurrent = 0;
    const gate = deferred();
    const q = new WorkQueue(
      async () => {
        concurrent += 1;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await gate.promise;
        concurrent -= 1;
      },
      { ...fast, workers: 3 },
    );
    q.start();
    for (let i = 0; i < 10; i++) q.add(`k${i}`);
    await until(() => concurrent === 3);
    expect(q.depth).toBe(7);
    gate.resolve();
    await until(() => concurrent === 0 && q.depth === 0);
    expect(maxConcurrent).toBe(3);
  });

  it('retries retryable failures with growing backoff and forgets them after a success', async () => {
    let calls = 0;
    const outcomes: Outcome[] = [];
    const q = new WorkQueue(
      () => {
        calls += 1;
        return calls <= 3
          ? Promise.reject(new ErpguardError(ErrorCode.Unavailable, 'API server down'))
          : Promise.resolve();
      },
      { ...fast, onResult: (_k, outcome) => outcomes.push(outcome) },
    );
    q.start();
    q.add('k');
    await until(() => outcomes.length === 1);
    expect(q.failureCount('k')).toBe(1);
    await until(() => calls === 4);
    await until(() => outcomes.length === 4);
    expect(outcomes).toEqual(['error', 'error', 'error', 'success']);
    expect(q.failureCount('k')).toBe(0);
  });

  it('computes per-key delays as exponential backoff, bounded by the shared bucket', () => {
    const q = new WorkQueue(() => Promise.resolve(), {
      backoff: { baseMs: 100, maxMs: 1_000, jitter: 0 },
      retryRateLimit: { perSecond: 1, burst: 2 },
      now: () => 0,
    });
    // Bucket: 2 free tokens, then one per second (the clock is frozen, so reservations queue).
    expect([q.addRateLimited('a'), q.addRateLimited('a'), q.addRateLimited('a')]).toEqual([
      100, 200, 1_000,
    ]);
    expect(q.addRateLimited('b')).toBe(2_000);
    q.forget('a');
    expect(q.failureCount('a')).toBe(0);
    void q.shutdown();
  });

  it('does not retry terminal errors', async () => {
    let calls = 0;
    const outcomes: Outcome[] = [];
    const q = new WorkQueue(
      () => {
        calls += 1;
        return Promise.reject(new ErpguardError(ErrorCode.PermissionDenied, 'forbidden'));
      },
      { ...fast, onResult: (_k, o) => outcomes.push(o) },
    );
    q.start();
    q.add('k');
    await until(() => outcomes.length === 1);
    await sleep(60);
    expect(calls).toBe(1);
    expect(outcomes).toEqual(['terminal']);
    expect(q.delayedCount).toBe(0);
  });

  it('requeues after requeueAfterMs, keeping the earliest of several delays', async () => {
    const runs: number[] = [];
    const handler: ReconcileHandler = () => {
      runs.push(runs.length);
      return Promise.resolve(runs.length === 1 ? { requeueAfterMs: 20 } : {});
    };
    const q = new WorkQueue(handler, fast);
    q.start();
    q.addAfter('later', 60_000);
    q.addAfter('later', 10);
    expect(q.delayedCount).toBe(1);
    q.add('k');
    await until(() => runs.length === 3); // k, later (10 ms), k again (20 ms)
    await sleep(30);
    expect(runs.length).toBe(3);
    await q.shutdown();
  });

  it('shutdown waits for running handlers and drops queued and delayed keys', async () => {
    const gate = deferred();
    const started: string[] = [];
    let finished = 0;
    const q = new WorkQueue(
      async (key) => {
        started.push(key);
        await gate.promise;
        finished += 1;
      },
      { ...fast, workers: 1 },
    );
    q.start();
    q.add('a');
    q.add('b');
    q.addAfter('c', 5);
    await until(() => started.length === 1);
    const done = q.shutdown(5_000);
    q.add('d'); // ignored after shutdown
    gate.resolve();
    expect(await done).toBe(true);
    await sleep(20);
    expect(started).toEqual(['a']);
    expect(finished).toBe(1);
    expect(q.depth).toBe(0);
  });

  it('shutdown gives up after its timeout when a handler hangs', async () => {
    const q = new WorkQueue(() => new Promise(() => undefined), fast);
    q.start();
    q.add('stuck');
    await until(() => q.depth === 0);
    expect(await q.shutdown(10)).toBe(false);
  });
});

describe('isRetryable', () => {
  it.each([
    [new ErpguardError(ErrorCode.Unavailable, 'x'), true],
    [new ErpguardError(ErrorCode.InvalidDocument, 'x'), false],
    [new ErpguardError(ErrorCode.PermissionDenied, 'x'), false],
    [new Error('bug'), true],
    ['string', true],
  ])('%s → %s', (error, want) => {
    expect(isRetryable(error)).toBe(want);
  });
});
