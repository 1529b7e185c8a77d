/**
 * In-memory index of what each module's sidecars must know: the verified policies where the
 * module is the destination, revoked identities, the trust bundle, and which SPIFFE IDs belong
 * to the caller modules those policies name. Watchers of a module are told only when their
 * module's snapshot actually changes (like linkerd's policy-controller index).
 *
 * The index trusts its input: the controller passes only verified policies. No I/O; time is
 * passed in.
 */
import type { ErpIntegrationPolicy, ObjectMeta } from '../api/v1alpha1/index.js';
import { spiffeIdFor } from '../ca/spiffe.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import type { ModuleBinding } from './authenticator.js';
import { parseDurationSeconds } from './duration.js';

export interface Revocation {
  spiffeId: string;
  until: Date;
  reason: string;
}

export interface IdentityBinding {
  spiffeId: string;
  module: string;
}

export interface PolicySnapshot {
  /** Increases whenever this snapshot's content changes; never decreases. */
  version: number;
  namespace: string;
  module: string;
  policies: readonly ErpIntegrationPolicy[];
  revokedIdentities: readonly Revocation[];
  trustBundlePem: string;
  identityBindings: readonly IdentityBinding[];
  /** Smallest certificateTTL among policies naming this module (either side), if any. */
  certificateTtlSeconds: number | null;
}

export interface ApplyResult {
  accepted: number;
  skipped: { policy: string; reason: string }[];
  /** `namespace/module` keys whose snapshot changed. */
  changed: string[];
}

export type SnapshotListener = (snapshot: PolicySnapshot) => void;

interface Cached {
  content: string;
  snapshot: PolicySnapshot;
}

function key(namespace: string, module: string): string {
  return `${namespace}/${module}`;
}

/** What travels to sidecars: identification, spec, and the approved spec hash; no approval PII. */
function publishable(policy: ErpIntegrationPolicy): ErpIntegrationPolicy {
  const m = policy.metadata;
  const metadata: ObjectMeta = { name: m.name };
  if (m.namespace !== undefined) metadata.namespace = m.namespace;
  if (m.generation !== undefined) metadata.generation = m.generation;
  if (m.uid !== undefined) metadata.uid = m.uid;
  if (m.resourceVersion !== undefined) metadata.resourceVersion = m.resourceVersion;
  const out: ErpIntegrationPolicy = {
    apiVersion: policy.apiVersion,
    kind: policy.kind,
    metadata,
    spec: structuredClone(policy.spec),
  };
  if (policy.status?.specHash !== undefined) out.status = { specHash: policy.status.specHash };
  return out;
}

/** A failing listener must not keep the others from hearing about a change. */
function notify<T>(listener: (value: T) => void, value: T): void {
  try {
    listener(value);
  } catch {
    // The listener owns its errors (the server logs inside its own listeners).
  }
}

export class PolicyIndex {
  private readonly trustDomain: string;
  private readonly clock: () => number;
  private globalVersion = 0;
  /** Destination key → policies (sorted by name). */
  private byDestination = new Map<string, ErpIntegrationPolicy[]>();
  /** Module key → smallest certificateTTL of any policy naming the module. */
  private ttlByModule = new Map<string, number>();
  private bindings = new Map<string, ModuleBinding>();
  private readonly revoked = new Map<string, Revocation>();
  private trustBundle = '';
  private readonly cache = new Map<string, Cached>();
  private readonly subscribers = new Map<string, Set<SnapshotListener>>();
  private readonly revocationListeners = new Set<(revocation: Revocation) => void>();

  constructor(options: { trustDomain?: string; clock?: () => number } = {}) {
    this.trustDomain = options.trustDomain ?? 'cluster.local';
    this.clock = options.clock ?? Date.now;
  }

  get version(): number {
    return this.globalVersion;
  }

  /** Replaces the whole set of verified policies. */
  applyPolicies(policies: readonly ErpIntegrationPolicy[]): ApplyResult {
    const byDestination = new Map<string, ErpIntegrationPolicy[]>();
    const ttl = new Map<string, number>();
    const skipped: ApplyResult['skipped'] = [];
    const seen = new Set<string>();
    for (const policy of policies) {
      const namespace = policy.metadata.namespace;
      const name = `${namespace ?? ''}/${policy.metadata.name}`;
      const destination = policy.spec?.destination?.module;
      const source = policy.spec?.source?.module;
      if (namespace === undefined || namespace === '') {
        skipped.push({ policy: name, reason: 'metadata.namespace is missing' });
        continue;
      }
      if (typeof destination !== 'string' || typeof source !== 'string') {
        skipped.push({
          policy: name,
          reason: 'spec.source.module or spec.destination.module is missing',
        });
        continue;
      }
      if (seen.has(name)) {
        skipped.push({ policy: name, reason: 'duplicate policy' });
        continue;
      }
      seen.add(name);
      const destinationKey = key(namespace, destination);
      const list = byDestination.get(destinationKey) ?? [];
      list.push(publishable(policy));
      byDestination.set(destinationKey, list);
      const seconds =
        policy.spec.certificateTTL === undefined
          ? null
          : parseDurationSeconds(policy.spec.certificateTTL);
      if (seconds !== null) {
        for (const k of [destinationKey, key(policy.spec.source.namespace ?? namespace, source)]) {
          ttl.set(k, Math.min(ttl.get(k) ?? Number.POSITIVE_INFINITY, Math.floor(seconds)));
        }
      }
    }
    for (const list of byDestination.values()) {
      list.sort((a, b) =>
        a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0,
      );
    }
    this.byDestination = byDestination;
    this.ttlByModule = ttl;
    const changed = this.refresh();
    return { accepted: seen.size, skipped, changed };
  }

  /** ServiceAccount → module bindings (who is module X when it calls). */
  setIdentityBindings(bindings: readonly ModuleBinding[]): string[] {
    const next = new Map<string, ModuleBinding>();
    for (const b of bindings) next.set(spiffeIdFor(this.trustDomain, b), { ...b });
    this.bindings = next;
    return this.refresh();
  }

  setTrustBundle(pem: string): string[] {
    if (pem === this.trustBundle) return [];
    this.trustBundle = pem;
    return this.refresh();
  }

  /**
   * Refuses `spiffeId` until `until` everywhere: every module's snapshot carries it, and the
   * identity server stops issuing to it.
   */
  revoke(spiffeId: string, until: Date, reason = ''): Revocation {
    if (!(until.getTime() > this.clock())) {
      throw new ErpguardError(ErrorCode.InvalidArgument, 'revocation must end in the future');
    }
    const revocation: Revocation = {
      spiffeId,
      until: new Date(until.getTime()),
      reason: reason.slice(0, 256),
    };
    this.revoked.set(spiffeId, revocation);
    this.refresh();
    for (const listener of this.revocationListeners) notify(listener, revocation);
    return { ...revocation };
  }

  unrevoke(spiffeId: string): boolean {
    const existed = this.revoked.delete(spiffeId);
    if (existed) this.refresh();
    return existed;
  }

  /** The active revocation of `spiffeId`, if any. */
  revocationOf(spiffeId: string): Revocation | null {
    const r = this.revoked.get(spiffeId);
    return r !== undefined && r.until.getTime() > this.clock() ? { ...r } : null;
  }

  revocations(): Revocation[] {
    const now = this.clock();
    return [...this.revoked.values()].filter((r) => r.until.getTime() > now).map((r) => ({ ...r }));
  }

  /** Drops revocations that have ended; call periodically. Returns how many were dropped. */
  pruneExpired(): number {
    const now = this.clock();
    let dropped = 0;
    for (const [id, r] of this.revoked) {
      if (r.until.getTime() <= now) {
        this.revoked.delete(id);
        dropped++;
      }
    }
    if (dropped > 0) this.refresh();
    return dropped;
  }

  onRevoke(listener: (revocation: Revocation) => void): () => void {
    this.revocationListeners.add(listener);
    return () => this.revocationListeners.delete(listener);
  }

  /** The module a ServiceAccount is bound to, from the identity bindings. */
  moduleOf(namespace: string, serviceAccount: string): string | null {
    return (
      this.bindings.get(spiffeIdFor(this.trustDomain, { namespace, serviceAccount }))?.module ??
      null
    );
  }

  certificateTtlFor(namespace: string, module: string): number | null {
    return this.ttlByModule.get(key(namespace, module)) ?? null;
  }

  snapshot(namespace: string, module: string): PolicySnapshot {
    const k = key(namespace, module);
    let cached = this.cache.get(k);
    if (cached === undefined) {
      const built = this.build(namespace, module);
      cached = {
        content: built.content,
        snapshot: { ...built.snapshot, version: this.globalVersion },
      };
      this.cache.set(k, cached);
    }
    return cached.snapshot;
  }

  /** Calls `listener` with each new snapshot of the module (not with the current one). */
  subscribe(namespace: string, module: string, listener: SnapshotListener): () => void {
    const k = key(namespace, module);
    this.snapshot(namespace, module); // pin the current version so the first change is detected
    const set = this.subscribers.get(k) ?? new Set<SnapshotListener>();
    set.add(listener);
    this.subscribers.set(k, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) {
        this.subscribers.delete(k);
        if (!this.byDestination.has(k)) this.cache.delete(k);
      }
    };
  }

  subscriberCount(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  // === internals ===

  private build(namespace: string, module: string): { content: string; snapshot: PolicySnapshot } {
    const policies = this.byDestination.get(key(namespace, module)) ?? [];
    const now = this.clock();
    const revokedIdentities = [...this.revoked.values()]
      .filter((r) => r.until.getTime() > now)
      .sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : 1));
    const sourceModules = new Set(
      policies.map((p) => key(p.spec.source.namespace ?? namespace, p.spec.source.module)),
    );
    const identityBindings: IdentityBinding[] = [];
    for (const [spiffeId, b] of this.bindings) {
      if (sourceModules.has(key(b.namespace, b.module)))
        identityBindings.push({ spiffeId, module: b.module });
    }
    identityBindings.sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : 1));
    const certificateTtlSeconds = this.certificateTtlFor(namespace, module);
    const content = JSON.stringify([
      policies,
      revokedIdentities.map((r) => [r.spiffeId, r.until.getTime(), r.reason]),
      this.trustBundle,
      identityBindings,
      certificateTtlSeconds,
    ]);
    return {
      content,
      snapshot: {
        version: 0,
        namespace,
        module,
        policies,
        revokedIdentities,
        trustBundlePem: this.trustBundle,
        identityBindings,
        certificateTtlSeconds,
      },
    };
  }

  /**
   * Recomputes every snapshot someone holds or that has policies; the changed ones get the
   * next version and their subscribers are told. Returns the changed keys.
   */
  private refresh(): string[] {
    const keys = new Set<string>([
      ...this.cache.keys(),
      ...this.byDestination.keys(),
      ...this.subscribers.keys(),
    ]);
    const next = this.globalVersion + 1;
    const changed: { key: string; snapshot: PolicySnapshot }[] = [];
    for (const k of keys) {
      const slash = k.indexOf('/');
      const built = this.build(k.slice(0, slash), k.slice(slash + 1));
      const cached = this.cache.get(k);
      if (cached !== undefined && cached.content === built.content) continue;
      if (cached === undefined && !this.subscribers.has(k) && built.snapshot.policies.length === 0)
        continue;
      const snapshot = { ...built.snapshot, version: next };
      this.cache.set(k, { content: built.content, snapshot });
      changed.push({ key: k, snapshot });
    }
    // Forget modules nobody watches and no policy names any more.
    for (const k of this.cache.keys()) {
      if (!this.byDestination.has(k) && !this.subscribers.has(k)) this.cache.delete(k);
    }
    if (changed.length > 0) this.globalVersion = next;
    for (const { key: k, snapshot } of changed) {
      for (const listener of this.subscribers.get(k) ?? []) notify(listener, snapshot);
    }
    return changed.map((c) => c.key);
  }
}
