/**
 * The verified policies of this replica, and their delivery to in-process listeners (the gRPC
 * policy index that streams them to sidecars).
 *
 * Every replica keeps this set, leader or not: every replica serves sidecars. Changes are
 * coalesced: all updates made in one turn of the event loop are delivered together, so a burst
 * (1,000 policies at start-up) costs a handful of deliveries, not one per policy. A policy counts
 * as *published* (its Ready condition) once a delivery containing its current spec reached at
 * least one listener without that listener throwing.
 */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

export type VerifiedPoliciesListener = (policies: readonly ErpIntegrationPolicy[]) => void;

interface Entry {
  policy: ErpIntegrationPolicy;
  /** uid + spec hash: what sidecars would receive. */
  fingerprint: string;
}

export class VerifiedSet {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<VerifiedPoliciesListener>();
  /** Fingerprints in the last successful delivery. */
  private delivered = new Map<string, string>();
  private pending: Promise<void> | undefined;
  private version = 0;
  private deliveredVersion = -1;
  private readonly log: Logger;

  constructor(
    logger: Logger = silentLogger(),
    /** Called after every change that sidecars would see (metrics, NetworkPolicy sync). */
    private readonly onChange?: (size: number) => void,
  ) {
    this.log = logger;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The current verified policies (a new array). */
  list(): ErpIntegrationPolicy[] {
    return [...this.entries.values()].map((e) => e.policy);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * Sets (verified) or removes (undefined) a policy. Returns true when what sidecars would see
   * changed: a policy added or removed, or its spec changed.
   */
  set(key: string, policy: ErpIntegrationPolicy | undefined, specHash = ''): boolean {
    const current = this.entries.get(key);
    if (policy === undefined) {
      if (current === undefined) return false;
      this.entries.delete(key);
      this.changed();
      return true;
    }
    const fingerprint = `${policy.metadata.uid ?? ''}|${specHash}`;
    // The newest object is kept either way (annotations and status may have changed).
    this.entries.set(key, { policy, fingerprint });
    if (current?.fingerprint === fingerprint) return false;
    this.changed();
    return true;
  }

  /** Whether sidecars have this policy with this spec (see the class comment). */
  isPublished(key: string, policy: ErpIntegrationPolicy, specHash: string): boolean {
    return this.delivered.get(key) === `${policy.metadata.uid ?? ''}|${specHash}`;
  }

  /** Registers a listener and calls it at once with the current list. Returns an unsubscribe. */
  subscribe(listener: VerifiedPoliciesListener): () => void {
    this.listeners.add(listener);
    this.callOne(listener, this.list());
    this.deliveredVersion = -1; // the next flush delivers to everyone and marks it published
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Delivers pending changes (coalesced with every other caller in this event-loop turn). */
  flush(): Promise<void> {
    if (this.deliveredVersion === this.version) return Promise.resolve();
    if (this.pending !== undefined) return this.pending;
    this.pending = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.pending = undefined;
        this.deliver();
        resolve();
      });
    });
    return this.pending;
  }

  private changed(): void {
    this.version += 1;
    this.onChange?.(this.entries.size);
  }

  private deliver(): void {
    const version = this.version;
    const policies = this.list();
    let ok = this.listeners.size > 0;
    for (const listener of this.listeners) ok = this.callOne(listener, policies) && ok;
    // On failure the version stays undelivered, so the next flush tries again.
    if (ok) {
      this.deliveredVersion = version;
      this.delivered = new Map([...this.entries].map(([k, e]) => [k, e.fingerprint]));
    }
  }

  private callOne(
    listener: VerifiedPoliciesListener,
    policies: readonly ErpIntegrationPolicy[],
  ): boolean {
    try {
      listener(policies);
      return true;
    } catch (error) {
      this.log.error('verified-policies listener failed', { err: error });
      return false;
    }
  }
}
