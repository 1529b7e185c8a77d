/**
 * Leader election rounds against an in-memory Lease with resourceVersion semantics (create fails
 * if it exists, update fails on a stale version), driven tick by tick with a fake clock.
 */
import { describe, expect, it } from '@jest/globals';

import { LeaderElector } from './leader-election.js';
import type { LeaseClient, LeaseRecord } from './leader-election.js';

class MemoryLease implements LeaseClient {
  readonly description = 'memory lease';
  record: LeaseRecord | null = null;
  private rv = 0;
  failing = false;
  writes = 0;

  get(): Promise<LeaseRecord | null> {
    if (this.failing) return Promise.reject(new Error('API server down'));
    return Promise.resolve(this.record === null ? null : { ...this.record });
  }
  create(record: LeaseRecord): Promise<LeaseRecord> {
    if (this.failing) return Promise.reject(new Error('API server down'));
    if (this.record !== null)
      return Promise.reject(Object.assign(new Error('exists'), { code: 409 }));
    return Promise.resolve(this.store(record));
  }
  update(record: LeaseRecord): Promise<LeaseRecord> {
    if (this.failing) return Promise.reject(new Error('API server down'));
    if (this.record === null || record.resourceVersion !== this.record.resourceVersion) {
      return Promise.reject(Object.assign(new Error('conflict'), { code: 409 }));
    }
    return Promise.resolve(this.store(record));
  }
  private store(record: LeaseRecord): LeaseRecord {
    this.writes += 1;
    this.rv += 1;
    this.record = { ...record, resourceVersion: String(this.rv) };
    return { ...this.record };
  }
}

function elector(
  lease: MemoryLease,
  identity: string,
  clock: { now: number },
  events: string[] = [],
): LeaderElector {
  return new LeaderElector({
    client: lease,
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    now: () => clock.now,
    onStartedLeading: () => events.push(`${identity} started`),
    onStoppedLeading: () => events.push(`${identity} stopped`),
  });
}

describe('LeaderElector', () => {
  it('the first candidate creates the Lease and leads; the second waits', async () => {
    const lease = new MemoryLease();
    const clock = { now: 1_000_000 };
    const events: string[] = [];
    const a = elector(lease, 'a', clock, events);
    const b = elector(lease, 'b', clock, events);
    await a.tick();
    await b.tick();
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    expect(b.leader).toBe('a');
    expect(lease.record).toMatchObject({
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      leaseTransitions: 0,
    });
    expect(events).toEqual(['a started']);
  });

  it('a renewing leader keeps the Lease however long the others wait', async () => {
    const lease = new MemoryLease();
    const clock = { now: 0 };
    const a = elector(lease, 'a', clock);
    const b = elector(lease, 'b', clock);
    for (let i = 0; i < 30; i++) {
      await a.tick();
      await b.tick();
      clock.now += 2_000;
    }
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    expect(lease.record?.holderIdentity).toBe('a');
  });

  it('takes over only after leaseDuration without renewal, measured on its own clock', async () => {
    const lease = new MemoryLease();
    const clock = { now: 0 };
    const events: string[] = [];
    const a = elector(lease, 'a', clock, events);
    const b = elector(lease, 'b', clock, events);
    await a.tick();
    await b.tick(); // b first sees a's record at t=0
    clock.now = 10_000;
    await a.tick(); // a renews: the record (resourceVersion) changes
    await b.tick(); // so b's 15 s start again from 10 s
    // a dies now. A renewTime far in the past changes nothing: only b's own clock counts.
    lease.record = { ...lease.record, renewTime: '2000-01-01T00:00:00.000000Z' };
    clock.now = 24_999;
    await b.tick();
    expect(b.isLeader()).toBe(false);
    clock.now = 25_001;
    await b.tick();
    expect(b.isLeader()).toBe(true);
    expect(lease.record).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(events).toEqual(['a started', 'b started']);
  });

  it('a leader that cannot renew steps down before anyone may take over', async () => {
    const lease = new MemoryLease();
    const clock = { now: 0 };
    const events: string[] = [];
    const a = elector(lease, 'a', clock, events);
    await a.tick();
    lease.failing = true;
    clock.now = 8_000;
    await a.tick();
    expect(a.isLeader()).toBe(true); // still within renewDeadline
    clock.now = 10_000;
    expect(a.isLeader()).toBe(false); // isLeader() itself honours the deadline
    await a.tick();
    expect(events).toEqual(['a started', 'a stopped']);
    // Nobody else could have acquired before 15 s after a's last renewal at 0 s.
    expect(10_000).toBeLessThan(15_000);
  });

  it('two candidates racing on one round cannot both win (optimistic concurrency)', async () => {
    const lease = new MemoryLease();
    const clock = { now: 0 };
    const a = elector(lease, 'a', clock);
    const b = elector(lease, 'b', clock);
    await Promise.all([a.tick(), b.tick()]);
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
  });

  it('stop() releases the Lease so a successor takes over on its next round', async () => {
    const lease = new MemoryLease();
    const clock = { now: 0 };
    const a = elector(lease, 'a', clock);
    const b = elector(lease, 'b', clock);
    await a.tick();
    await b.tick();
    await a.stop();
    expect(a.isLeader()).toBe(false);
    expect(lease.record?.holderIdentity).toBeUndefined();
    clock.now += 2_000;
    await b.tick();
    expect(b.isLeader()).toBe(true);
  });

  it('rejects unsafe timing', () => {
    const lease = new MemoryLease();
    expect(
      () =>
        new LeaderElector({
          client: lease,
          identity: 'a',
          leaseDurationMs: 10_000,
          renewDeadlineMs: 10_000,
        }),
    ).toThrow(/renewDeadline/);
    expect(
      () =>
        new LeaderElector({
          client: lease,
          identity: 'a',
          renewDeadlineMs: 2_000,
          retryPeriodMs: 2_000,
        }),
    ).toThrow(/retryPeriod/);
    expect(() => new LeaderElector({ client: lease, identity: '' })).toThrow(/identity/);
  });
});
