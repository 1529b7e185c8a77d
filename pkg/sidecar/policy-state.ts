/**
 * The policy snapshot in force, compiled once per snapshot and swapped atomically: a request reads
 * `current` once and uses that object throughout, so it never sees half of an update. A snapshot
 * that fails to compile is refused and the last good one stays.
 */
import { compilePolicies, type CompiledPolicySet } from '../policy/compile.js';
import type {
  Clock,
  PolicySnapshot,
  PolicySnapshotSource,
  RevokedIdentity,
  SidecarLogger,
} from './types.js';

export interface ActiveSnapshot {
  readonly version: number;
  readonly snapshot: PolicySnapshot;
  readonly compiled: CompiledPolicySet;
  /** SPIFFE ID → revocation entries. */
  readonly revoked: ReadonlyMap<string, readonly Revocation[]>;
  readonly extraRoots: readonly string[];
}

export interface Revocation {
  /** Certificates with NotBefore <= this are revoked (Infinity: all). */
  issuedBefore: number;
  /** The entry applies until then (Infinity: forever). */
  until: number;
}

export class PolicyState {
  private active: ActiveSnapshot | undefined;
  private readonly listeners: ((s: ActiveSnapshot) => void)[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    source: PolicySnapshotSource,
    private readonly module: string,
    private readonly logger: SidecarLogger,
  ) {
    const first = source.current();
    if (first !== undefined) this.update(first);
    this.unsubscribe = source.onChange((s) => this.update(s));
  }

  get current(): ActiveSnapshot | undefined {
    return this.active;
  }

  onChange(listener: (s: ActiveSnapshot) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.unsubscribe();
  }

  /** Compiles and installs a snapshot; returns false (keeping the last good one) when unusable. */
  update(snapshot: PolicySnapshot): boolean {
    try {
      if (!Number.isFinite(snapshot.version) || !Array.isArray(snapshot.policies)) {
        throw new Error('snapshot needs a numeric version and a policies list');
      }
      const compiled = compilePolicies(snapshot.policies, { destinationModule: this.module });
      for (const p of compiled.problems) {
        this.logger.warn('policy entry skipped (allows nothing)', {
          ...p,
          version: snapshot.version,
        });
      }
      const next: ActiveSnapshot = Object.freeze({
        version: snapshot.version,
        snapshot,
        compiled,
        revoked: revocations(snapshot.revokedIdentities ?? []),
        extraRoots: pemList(snapshot.trustBundle),
      });
      this.active = next;
      this.logger.info('policy snapshot installed', {
        version: snapshot.version,
        policies: compiled.stats.policies,
        rules: compiled.stats.rules,
      });
      for (const l of this.listeners) l(next);
      return true;
    } catch (e) {
      this.logger.error('policy snapshot refused; keeping the last good one', {
        version: snapshot?.version,
        error: e instanceof Error ? e : String(e),
      });
      return false;
    }
  }
}

function toMs(value: string | number | undefined): number {
  if (value === undefined) return Infinity;
  const ms = typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new Error(`invalid time ${JSON.stringify(value)} in revokedIdentities`);
  return ms;
}

function revocations(list: readonly (string | RevokedIdentity)[]): Map<string, Revocation[]> {
  const out = new Map<string, Revocation[]>();
  for (const entry of list) {
    const e: RevokedIdentity = typeof entry === 'string' ? { spiffeId: entry } : entry;
    if (typeof e.spiffeId !== 'string') throw new Error('revokedIdentities entry without spiffeId');
    const r = { issuedBefore: toMs(e.issuedBefore), until: toMs(e.until) };
    const existing = out.get(e.spiffeId);
    if (existing === undefined) out.set(e.spiffeId, [r]);
    else existing.push(r);
  }
  return out;
}

/** True when the certificate (identity + NotBefore) is revoked at `now`. */
export function isRevoked(
  active: ActiveSnapshot,
  spiffeId: string,
  certNotBefore: number,
  now: Clock | number,
): boolean {
  const entries = active.revoked.get(spiffeId);
  if (entries === undefined) return false;
  const t = typeof now === 'number' ? now : now();
  return entries.some((r) => t < r.until && certNotBefore <= r.issuedBefore);
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Normalises one PEM string with several blocks, or a list of PEM strings, to one PEM per entry. */
export function pemList(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  const all = typeof value === 'string' ? [value] : value;
  return all.flatMap((pem) => pem.match(PEM_BLOCK) ?? []).map((p) => `${p}\n`);
}
