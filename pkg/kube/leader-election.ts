/**
 * Lease-based leader election (coordination.k8s.io/v1), the client-go algorithm:
 *
 * - Every `retryPeriod` each candidate reads the Lease. A Lease held by someone else is taken
 *   over only when its record has not changed for `leaseDuration`, measured on the candidate's
 *   own clock from when it first saw that record (never by comparing `renewTime` with local time,
 *   so clock skew between nodes does not matter).
 * - Writes use the Lease's resourceVersion, so two candidates can never both win one round.
 * - The leader renews every `retryPeriod`; if it could not renew for `renewDeadline` it stops
 *   leading. `renewDeadline < leaseDuration` leaves a margin in which nobody else can have
 *   taken over yet, so "I am leader" is never true on two replicas at once (given bounded
 *   clock drift, as in client-go).
 * - stop() releases the Lease (empty holder, 1 s duration) so a successor takes over at once.
 *
 * Only the leader writes; every replica keeps serving (webhook, gRPC) and keeps its caches.
 */
import { V1MicroTime } from '@kubernetes/client-node';
import type { V1Lease } from '@kubernetes/client-node';

import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { isNotFound, kubeError } from './errors.js';

export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** RFC 3339 with microseconds. */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  /** Set on records read from the server; required by update(). */
  resourceVersion?: string;
}

/** Storage of one Lease. create() and update() must fail when someone else wrote first. */
export interface LeaseClient {
  get(): Promise<LeaseRecord | null>;
  create(record: LeaseRecord): Promise<LeaseRecord>;
  update(record: LeaseRecord): Promise<LeaseRecord>;
  readonly description: string;
}

export const DEFAULT_LEASE_NAME = 'erpguard-controller';

const timeString = (v: unknown): string | undefined =>
  v instanceof Date ? v.toISOString() : typeof v === 'string' ? v : undefined;

function fromLease(lease: V1Lease): LeaseRecord {
  const s = lease.spec ?? {};
  const out: LeaseRecord = {};
  if (s.holderIdentity !== undefined && s.holderIdentity !== '')
    out.holderIdentity = s.holderIdentity;
  if (s.leaseDurationSeconds !== undefined) out.leaseDurationSeconds = s.leaseDurationSeconds;
  const acquire = timeString(s.acquireTime);
  if (acquire !== undefined) out.acquireTime = acquire;
  const renew = timeString(s.renewTime);
  if (renew !== undefined) out.renewTime = renew;
  if (s.leaseTransitions !== undefined) out.leaseTransitions = s.leaseTransitions;
  if (lease.metadata?.resourceVersion !== undefined)
    out.resourceVersion = lease.metadata.resourceVersion;
  return out;
}

function toLease(name: string, namespace: string, r: LeaseRecord): V1Lease {
  const micro = (t: string | undefined): V1MicroTime | undefined =>
    t === undefined ? undefined : new V1MicroTime(Date.parse(t));
  const acquireTime = micro(r.acquireTime);
  const renewTime = micro(r.renewTime);
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name,
      namespace,
      ...(r.resourceVersion !== undefined ? { resourceVersion: r.resourceVersion } : {}),
    },
    spec: {
      ...(r.holderIdentity !== undefined ? { holderIdentity: r.holderIdentity } : {}),
      ...(r.leaseDurationSeconds !== undefined
        ? { leaseDurationSeconds: r.leaseDurationSeconds }
        : {}),
      ...(acquireTime !== undefined ? { acquireTime } : {}),
      ...(renewTime !== undefined ? { renewTime } : {}),
      ...(r.leaseTransitions !== undefined ? { leaseTransitions: r.leaseTransitions } : {}),
    },
  };
}

/** A Lease object in the API server. */
export class KubeLeaseClient implements LeaseClient {
  readonly description: string;

  constructor(
    private readonly clients: KubeClients,
    private readonly namespace: string,
    private readonly name: string = DEFAULT_LEASE_NAME,
  ) {
    this.description = `Lease ${namespace}/${name}`;
  }

  async get(): Promise<LeaseRecord | null> {
    try {
      return fromLease(
        await this.clients.coordination.readNamespacedLease(
          { name: this.name, namespace: this.namespace },
          requestOptions(this.clients),
        ),
      );
    } catch (error) {
      if (isNotFound(error)) return null;
      throw kubeError(`read ${this.description}`, error);
    }
  }

  async create(record: LeaseRecord): Promise<LeaseRecord> {
    try {
      return fromLease(
        await this.clients.coordination.createNamespacedLease(
          { namespace: this.namespace, body: toLease(this.name, this.namespace, record) },
          requestOptions(this.clients),
        ),
      );
    } catch (error) {
      throw kubeError(`create ${this.description}`, error);
    }
  }

  async update(record: LeaseRecord): Promise<LeaseRecord> {
    try {
      return fromLease(
        await this.clients.coordination.replaceNamespacedLease(
          {
            name: this.name,
            namespace: this.namespace,
            body: toLease(this.name, this.namespace, record),
          },
          requestOptions(this.clients),
        ),
      );
    } catch (error) {
      throw kubeError(`update ${this.description}`, error);
    }
  }
}

export interface LeaderElectionOptions {
  client: LeaseClient;
  /** Unique per replica (pod name + random suffix). */
  identity: string;
  /** How long a Lease holds without renewal. Default 15 s. */
  leaseDurationMs?: number;
  /** The leader gives up if it could not renew for this long. Default 10 s. */
  renewDeadlineMs?: number;
  /** Interval between attempts (acquire and renew). Default 2 s. */
  retryPeriodMs?: number;
  /** Release the Lease in stop(). Default true. */
  releaseOnStop?: boolean;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  /** The observed holder changed (also someone else). */
  onNewLeader?: (identity: string | undefined) => void;
  logger?: Logger;
  now?: () => number;
  random?: () => number;
}

export class LeaderElector {
  readonly identity: string;
  private readonly client: LeaseClient;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private leading = false;
  private lastRenewMs = 0;
  private observed: LeaseRecord | undefined;
  private observedAtMs = 0;
  private observedHolder: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly options: LeaderElectionOptions) {
    this.client = options.client;
    this.identity = options.identity;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.identity === '') throw new RangeError('leader election: identity must not be empty');
    if (!(this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new RangeError('leader election: renewDeadline must be less than leaseDuration');
    }
    if (!(this.retryPeriodMs < this.renewDeadlineMs)) {
      throw new RangeError('leader election: retryPeriod must be less than renewDeadline');
    }
    this.log = (options.logger ?? silentLogger()).child({
      lease: this.client.description,
      identity: this.identity,
    });
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  /** True while this replica holds a Lease it renewed within renewDeadline. */
  isLeader(): boolean {
    return this.leading && this.now() - this.lastRenewMs < this.renewDeadlineMs;
  }

  /** The holder as last observed (may be this replica). */
  get leader(): string | undefined {
    return this.observedHolder;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  /** Stops campaigning; releases the Lease if held (so a successor need not wait it out). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
    const wasLeading = this.leading;
    this.setLeading(false);
    if (wasLeading && this.options.releaseOnStop !== false) await this.release();
  }

  /** One acquire-or-renew round (exported for tests; the loop calls it every retryPeriod). */
  async tick(): Promise<void> {
    const ok = await this.tryAcquireOrRenew();
    if (ok) {
      this.lastRenewMs = this.now();
      this.setLeading(true);
    } else if (this.leading && this.now() - this.lastRenewMs >= this.renewDeadlineMs) {
      this.log.warn('failed to renew the lease within the renew deadline; stepping down');
      this.setLeading(false);
    }
  }

  private loop(): void {
    if (!this.running) return;
    this.inFlight = this.tick()
      .catch((error: unknown) => this.log.error('leader election round failed', { err: error }))
      .finally(() => {
        this.inFlight = undefined;
        if (!this.running) return;
        // Candidates spread their polls a little; the leader renews on the beat.
        const jitter = this.leading ? 0 : Math.floor(this.random() * this.retryPeriodMs * 0.2);
        this.timer = setTimeout(() => this.loop(), this.retryPeriodMs + jitter);
      });
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) {
      this.log.info('became leader');
      this.options.onStartedLeading?.();
    } else {
      this.log.info('stopped leading');
      this.options.onStoppedLeading?.();
    }
  }

  private observe(record: LeaseRecord | null): void {
    const now = this.now();
    if (
      record === null ||
      this.observed === undefined ||
      this.observed.resourceVersion !== record.resourceVersion
    ) {
      this.observed = record ?? undefined;
      this.observedAtMs = now;
    }
    const holder = record?.holderIdentity;
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      this.options.onNewLeader?.(holder);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const nowIso = new Date(this.now()).toISOString();
    const durationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    let current: LeaseRecord | null;
    try {
      current = await this.client.get();
    } catch (error) {
      this.log.warn('cannot read the lease', { err: error });
      return false;
    }
    if (current === null) {
      try {
        const created = await this.client.create({
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: nowIso,
          renewTime: nowIso,
          leaseTransitions: 0,
        });
        this.observe(created);
        return true;
      } catch (error) {
        this.log.info('lost the race to create the lease', { err: error });
        return false;
      }
    }
    this.observe(current);
    const holder = current.holderIdentity;
    const heldByOther = holder !== undefined && holder !== this.identity;
    if (heldByOther) {
      const durationMs = (current.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (this.observedAtMs + durationMs > this.now()) return false;
    }
    const next: LeaseRecord = {
      holderIdentity: this.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: holder === this.identity ? (current.acquireTime ?? nowIso) : nowIso,
      renewTime: nowIso,
      leaseTransitions:
        holder === this.identity
          ? (current.leaseTransitions ?? 0)
          : (current.leaseTransitions ?? 0) + 1,
      ...(current.resourceVersion !== undefined
        ? { resourceVersion: current.resourceVersion }
        : {}),
    };
    try {
      const updated = await this.client.update(next);
      this.observe(updated);
      return true;
    } catch (error) {
      this.log.info('cannot acquire or renew the lease', { err: error });
      return false;
    }
  }

  private async release(): Promise<void> {
    try {
      const current = await this.client.get();
      if (current?.holderIdentity !== this.identity) return;
      const nowIso = new Date(this.now()).toISOString();
      await this.client.update({
        leaseDurationSeconds: 1,
        acquireTime: nowIso,
        renewTime: nowIso,
        ...(current.leaseTransitions !== undefined
          ? { leaseTransitions: current.leaseTransitions }
          : {}),
        ...(current.resourceVersion !== undefined
          ? { resourceVersion: current.resourceVersion }
          : {}),
      });
      this.log.info('released the lease');
    } catch (error) {
      this.log.warn('cannot release the lease', { err: error });
    }
  }
}
