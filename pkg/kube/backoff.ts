/**
 * Exponential backoff with jitter, shared by the informer supervisor (pkg/kube) and the work
 * queue (pkg/controller). Pure: randomness is passed in.
 */

export interface BackoffOptions {
  /** Delay of the first retry, before jitter. */
  baseMs: number;
  /** Upper bound of any delay, jitter included. */
  maxMs: number;
  /**
   * Fraction of the delay that is randomised, 0..1. With 0.5 a 4 s step waits between 2 s and
   * 4 s ("equal jitter"), so many clients that failed together do not retry together.
   */
  jitter: number;
}

/** setTimeout's limit: larger delays overflow and fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Delay before retry number `attempt` (0 = the first retry): `base * 2^attempt`, capped at
 * `maxMs`, of which the `jitter` fraction is scaled by `random()` (a value in [0, 1)).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number,
): number {
  const step = Math.max(0, Math.floor(attempt));
  // 2^step overflows to Infinity long after it passed any sane maxMs; min() handles that.
  const raw = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(step, 62));
  const jitter = Math.min(1, Math.max(0, options.jitter));
  const r = Math.min(1, Math.max(0, random()));
  const delay = raw * (1 - jitter) + raw * jitter * r;
  return Math.min(MAX_TIMER_MS, Math.max(0, Math.round(delay)));
}
