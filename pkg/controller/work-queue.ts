/**
 * A keyed work queue in the client-go mould:
 *
 * - Dedupe: a key waits in the queue at most once, however many events name it (reconcile is
 *   level-based: the handler reads the current state, never the event).
 * - One worker per key: a key added while it is being processed is queued again when that run
 *   ends, never run twice at once.
 * - Retries: a retryable failure requeues the key after max(per-key exponential backoff with
 *   jitter, an overall token bucket), so one broken object backs off alone and a mass failure
 *   (API server down) cannot turn into a retry storm. A terminal failure (an ErpguardError that
 *   is not retryable) is dropped until the next event or resync.
 * - Delays: `requeueAfter` from the handler, or addAfter(), schedules a key; the earliest
 *   pending time wins.
 */
import { isErpguardError } from '../errors/errors.js';
import { backoffDelay, MAX_TIMER_MS } from '../kube/backoff.js';
import type { BackoffOptions } from '../kube/backoff.js';

export interface ReconcileResult {
  /** Run again after this long (e.g. when validUntil passes). */
  requeueAfterMs?: number;
}

export type ReconcileHandler = (key: string) => Promise<ReconcileResult | void>;

export type Outcome = 'success' | 'error' | 'terminal';

export interface RateLimit {
  /** Sustained retries per second, over all keys. */
  perSecond: number;
  burst: number;
}

export interface WorkQueueOptions {
  /** Keys processed in parallel (never the same key twice). Default 4. */
  workers?: number;
  /** Per-key retry backoff. Default 200 ms doubling to 5 min, half jittered. */
  backoff?: BackoffOptions;
  /** Overall retry rate. Default 10/s, burst 100 (client-go's default). */
  retryRateLimit?: RateLimit;
  random?: () => number;
  now?: () => number;
  /** After each run: the key, how it ended, how long it took, and the error if any. */
  onResult?: (key: string, outcome: Outcome, durationMs: number, error?: unknown) => void;
  /** The number of keys waiting to run changed. */
  onDepth?: (depth: number) => void;
}

export const DEFAULT_QUEUE_BACKOFF: BackoffOptions = { baseMs: 200, maxMs: 300_000, jitter: 0.5 };
export const DEFAULT_RETRY_RATE_LIMIT: RateLimit = { perSecond: 10, burst: 100 };

/** True when a failure is worth retrying: unknown errors are, non-retryable coded ones are not. */
export function isRetryable(error: unknown): boolean {
  return !isErpguardError(error) || error.retryable;
}

class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {
    this.tokens = limit.burst;
    this.last = now();
  }

  /** Takes a token; returns how long to wait until it may be used (reservations queue up). */
  reserve(): number {
    const now = this.now();
    this.tokens = Math.min(
      this.limit.burst,
      this.tokens + ((now - this.last) / 1000) * this.limit.perSecond,
    );
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.limit.perSecond) * 1000);
  }
}

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Keys waiting in `queue`, or added while processing (re-queued when that run ends). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly workers: number;
  private readonly backoff: BackoffOptions;
  private readonly bucket: TokenBucket;
  private readonly random: () => number;
  private readonly now: () => number;
  private active = 0;
  private started = false;
  private stopping = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly handler: ReconcileHandler,
    private readonly options: WorkQueueOptions = {},
  ) {
    this.workers = Math.max(1, Math.floor(options.workers ?? 4));
    this.backoff = options.backoff ?? DEFAULT_QUEUE_BACKOFF;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.bucket = new TokenBucket(options.retryRateLimit ?? DEFAULT_RETRY_RATE_LIMIT, this.now);
  }

  /** Keys waiting to run (not counting delayed ones or those running). */
  get depth(): number {
    return this.queue.length;
  }

  /** Keys whose next run is scheduled for later. */
  get delayedCount(): number {
    return this.delayed.size;
  }

  /** Consecutive retryable failures of a key (0 after a success). */
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.pump();
  }

  add(key: string): void {
    if (this.stopping || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // picked up again when the current run ends
    this.queue.push(key);
    this.depthChanged();
    this.pump();
  }

  /** Runs `key` after `delayMs` (immediately when <= 0); an earlier pending time wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopping) return;
    if (!(delayMs > 0)) {
      this.add(key);
      return;
    }
    const ms = Math.min(MAX_TIMER_MS, Math.ceil(delayMs));
    const at = this.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      clearTimeout(existing.timer);
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /** Requeues after a failure: per-key backoff, bounded by the overall retry rate. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.max(backoffDelay(n, this.backoff, this.random), this.bucket.reserve());
    this.addAfter(key, delay);
    return delay;
  }

  /** Forgets a key's failure history (it succeeded, or it is gone). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /**
   * Stops taking work: pending and delayed keys are dropped, running ones finish. Resolves when
   * no handler runs any more, or after `timeoutMs`.
   */
  async shutdown(timeoutMs = 10_000): Promise<boolean> {
    this.stopping = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.queue.length = 0;
    this.dirty.clear();
    this.depthChanged();
    if (this.active === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true)));
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([idle, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private depthChanged(): void {
    this.options.onDepth?.(this.queue.length);
  }

  private pump(): void {
    while (this.started && !this.stopping && this.active < this.workers && this.queue.length > 0) {
      const key = this.queue.shift() as string;
      this.dirty.delete(key);
      this.processing.add(key);
      this.active += 1;
      this.depthChanged();
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const started = this.now();
    try {
      const result = await this.handler(key);
      this.forget(key);
      this.options.onResult?.(key, 'success', this.now() - started);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      const retry = isRetryable(error);
      this.options.onResult?.(key, retry ? 'error' : 'terminal', this.now() - started, error);
      if (retry) this.addRateLimited(key);
      else this.forget(key);
    } finally {
      this.processing.delete(key);
      this.active -= 1;
      if (this.dirty.has(key) && !this.stopping) {
        this.queue.push(key);
        this.depthChanged();
      }
      if (this.active === 0 && this.stopping) {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
      this.pump();
    }
  }
}
