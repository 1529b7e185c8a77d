/** Token buckets per key (SPIFFE ID), bounded in memory. Time is passed in. */

export interface RateLimit {
  /** Sustained rate. */
  perSecond: number;
  /** Bucket size: how many may come at once. */
  burst: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class KeyedRateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly clock: () => number,
    private readonly maxKeys = 100_000,
  ) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1)) {
      throw new Error('rate limit needs perSecond > 0 and burst >= 1');
    }
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  tryTake(key: string): boolean {
    const now = this.clock();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) this.evictFull(now);
      bucket = { tokens: this.limit.burst, updatedMs: now };
      this.buckets.set(key, bucket);
    } else {
      const elapsed = Math.max(0, now - bucket.updatedMs) / 1000;
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + elapsed * this.limit.perSecond);
      bucket.updatedMs = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Forgets buckets that have refilled completely: they behave exactly like new ones. */
  private evictFull(now: number): void {
    for (const [key, bucket] of this.buckets) {
      const refilled =
        bucket.tokens + (Math.max(0, now - bucket.updatedMs) / 1000) * this.limit.perSecond;
      if (refilled >= this.limit.burst) this.buckets.delete(key);
    }
    // Still full of active keys: drop the oldest rather than grow without bound.
    while (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done === true) break;
      this.buckets.delete(oldest.value);
    }
  }
}
