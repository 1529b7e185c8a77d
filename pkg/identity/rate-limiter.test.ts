import { describe, expect, it } from '@jest/globals';

import { parseDurationSeconds } from './duration.js';
import { KeyedRateLimiter } from './rate-limiter.js';

describe('KeyedRateLimiter', () => {
  it('allows a burst, then the sustained rate, per key', () => {
    const clock = { now: 0 };
    const limiter = new KeyedRateLimiter({ perSecond: 2, burst: 3 }, () => clock.now);
    expect([1, 2, 3, 4].map(() => limiter.tryTake('a'))).toEqual([true, true, true, false]);
    expect(limiter.tryTake('b')).toBe(true); // other identities are not affected
    clock.now += 500; // one token back at 2/s
    expect([limiter.tryTake('a'), limiter.tryTake('a')]).toEqual([true, false]);
    clock.now += 60_000; // refills only up to the burst
    expect([1, 2, 3, 4].map(() => limiter.tryTake('a'))).toEqual([true, true, true, false]);
  });

  it('stays bounded in memory', () => {
    const clock = { now: 0 };
    const limiter = new KeyedRateLimiter({ perSecond: 1, burst: 1 }, () => clock.now, 100);
    for (let i = 0; i < 1000; i++) limiter.tryTake(`id-${i}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });

  it('refuses a meaningless configuration', () => {
    expect(() => new KeyedRateLimiter({ perSecond: 0, burst: 1 }, () => 0)).toThrow();
  });
});

describe('parseDurationSeconds', () => {
  it.each<[string, number | null]>([
    ['1h', 3600],
    ['90m', 5400],
    ['1h30m', 5400],
    ['45s', 45],
    ['1.5h', 5400],
    ['500ms', 0.5],
    ['', null],
    ['1d', null],
    ['h', null],
    ['-1h', null],
    ['0s', null],
    ['1h 30m', null],
    ['1h30', null],
  ])('%j → %p', (text, expected) => {
    expect(parseDurationSeconds(text)).toBe(expected);
  });
});
