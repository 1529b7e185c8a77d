/**
 * Token buckets keyed by (policy, caller SPIFFE ID): the key holds nothing the caller controls
 * beyond the identity its certificate proves. Time is passed in. The number of buckets is bounded:
 * above `maxKeys`, full buckets (idle long enough to refill, so dropping them changes nothing) are
 * swept first, then the oldest ones.
 */
import type { RateLimit } from '../api/v1alpha1/index.js';

export type RateDecision = { ok: true } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  last: number;
  rate: number;
  capacity: number;
}

const OK: RateDecision = Object.freeze({ ok: true });

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly maxKeys = 100_000) {}

  /** Takes one token for `key` at time `now` (ms). */
  take(key: string, limit: RateLimit, now: number): RateDecision {
    const rate = limit.requestsPerSecond;
    if (!(rate > 0)) return { ok: false, retryAfterSeconds: 1 };
    const capacity = Math.max(1, limit.burst ?? rate);
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) this.evict(now);
      bucket = { tokens: capacity, last: now, rate, capacity };
      this.buckets.set(key, bucket);
    } else {
      if (bucket.rate !== rate || bucket.capacity !== capacity) {
        // The policy changed: keep the tokens already spent, within the new capacity.
        bucket.rate = rate;
        bucket.capacity = capacity;
      }
      const elapsed = now - bucket.last;
      if (elapsed > 0) {
        bucket.tokens = Math.min(capacity, bucket.tokens + (elapsed * rate) / 1000);
        bucket.last = now;
      }
      if (bucket.tokens > capacity) bucket.tokens = capacity;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return OK;
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / rate)) };
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.last) * b.rate) / 1000 >= b.capacity) this.buckets.delete(key);
    }
    // Still full: drop the oldest tenth (Map iterates in insertion order).
    if (this.buckets.size >= this.maxKeys) {
      let drop = Math.max(1, Math.floor(this.maxKeys / 10));
      for (const key of this.buckets.keys()) {
        if (drop-- <= 0) break;
        this.buckets.delete(key);
      }
    }
  }
}
