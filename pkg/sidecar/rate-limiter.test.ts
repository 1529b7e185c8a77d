import { describe, expect, it } from '@jest/globals';

import { RateLimiter } from './rate-limiter.js';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the rate', () => {
    const rl = new RateLimiter();
    const limit = { requestsPerSecond: 2, burst: 3 };
    const t = 1_000_000;
    expect([1, 2, 3].map(() => rl.take('k', limit, t).ok)).toEqual([true, true, true]);
    expect(rl.take('k', limit, t)).toEqual({ ok: false, retryAfterSeconds: 1 });
    expect(rl.take('k', limit, t + 499).ok).toBe(false);
    expect(rl.take('k', limit, t + 500).ok).toBe(true);
    expect(rl.take('k', limit, t + 500).ok).toBe(false);
  });

  it('defaults the burst to the rate and computes Retry-After for slow rates', () => {
    const rl = new RateLimiter();
    const limit = { requestsPerSecond: 0.1 };
    expect(rl.take('k', limit, 0).ok).toBe(true);
    expect(rl.take('k', limit, 0)).toEqual({ ok: false, retryAfterSeconds: 10 });
  });

  it('keeps buckets apart per key', () => {
    const rl = new RateLimiter();
    const limit = { requestsPerSecond: 1, burst: 1 };
    expect(rl.take('policy-a\nspiffe://x/ns/a/sa/crm', limit, 0).ok).toBe(true);
    expect(rl.take('policy-a\nspiffe://x/ns/a/sa/crm', limit, 0).ok).toBe(false);
    expect(rl.take('policy-b\nspiffe://x/ns/a/sa/crm', limit, 0).ok).toBe(true);
    expect(rl.take('policy-a\nspiffe://x/ns/a/sa/wms', limit, 0).ok).toBe(true);
  });

  it('does not refill when the clock goes backwards', () => {
    const rl = new RateLimiter();
    const limit = { requestsPerSecond: 1, burst: 1 };
    expect(rl.take('k', limit, 10_000).ok).toBe(true);
    expect(rl.take('k', limit, 5_000).ok).toBe(false);
  });

  it('keeps spent tokens when the policy lowers the limit', () => {
    const rl = new RateLimiter();
    for (let i = 0; i < 10; i++) rl.take('k', { requestsPerSecond: 100 }, 0);
    expect(rl.take('k', { requestsPerSecond: 5 }, 0).ok).toBe(true);
    for (let i = 0; i < 4; i++) rl.take('k', { requestsPerSecond: 5 }, 0);
    expect(rl.take('k', { requestsPerSecond: 5 }, 0).ok).toBe(false);
  });

  it('refuses a zero rate instead of dividing by it', () => {
    expect(new RateLimiter().take('k', { requestsPerSecond: 0 }, 0)).toEqual({
      ok: false,
      retryAfterSeconds: 1,
    });
  });

  it('bounds the number of buckets, dropping idle (full) ones first', () => {
    const rl = new RateLimiter(100);
    const limit = { requestsPerSecond: 1, burst: 1 };
    rl.take('busy', limit, 0);
    for (let i = 0; i < 500; i++) rl.take(`idle-${i}`, limit, 0);
    expect(rl.size).toBeLessThanOrEqual(100);
    // Long after: every bucket refilled, so a sweep can drop them all.
    for (let i = 0; i < 50; i++) rl.take(`late-${i}`, limit, 1_000_000);
    expect(rl.size).toBeLessThanOrEqual(100);
  });
});
