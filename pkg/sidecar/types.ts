/**
 * The ports the sidecar consumes. The sidecar defines them (small and synchronous on the hot path)
 * and cmd/sidecar adapts the identity clients (pkg/workload-identity, pkg/identity) or the local-mode
 * file sources to them.
 */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';

/** This workload's TLS material, as the workload-identity client holds it. */
export interface TlsMaterial {
  /** PEM private key. */
  key: string;
  /** PEM certificates, leaf first (a single PEM string with several blocks is accepted too). */
  certChain: string | readonly string[];
  /** PEM root certificates this workload trusts (several during a CA rotation). */
  trustBundle: string | readonly string[];
  /** Expiry of the leaf. */
  notAfter: Date | number;
  /** SPIFFE ID of the leaf. */
  spiffeId: string;
}

/** Something that holds a current value and tells when it changes (never blocks). */
export interface Source<T> {
  current(): T | undefined;
  /** Called after every change; returns an unsubscribe function. */
  onChange(listener: (value: T) => void): () => void;
}

export type TlsMaterialSource = Source<TlsMaterial>;

/**
 * A revoked identity: certificates of `spiffeId` are refused. `issuedBefore` (RFC 3339 or epoch ms)
 * limits the revocation to certificates whose NotBefore is at or before it, so a re-issued
 * certificate works again; `until` ends the entry (when every revoked certificate has expired).
 */
export interface RevokedIdentity {
  spiffeId: string;
  issuedBefore?: string | number;
  until?: string | number;
}

/** What the Policy.Watch stream (or the local file source) delivers. Policies are already verified. */
export interface PolicySnapshot {
  /** Monotonic version; exported as erpguard_policy_snapshot_version and written to audit records. */
  version: number;
  /** Verified policies where this module is the destination (others are ignored). */
  policies: readonly ErpIntegrationPolicy[];
  /** Revoked identities: a SPIFFE ID string revokes every certificate of it. */
  revokedIdentities?: readonly (string | RevokedIdentity)[];
  /** Extra PEM roots to trust (added to the TLS material's bundle). */
  trustBundle?: string | readonly string[];
  /** SPIFFE ID → module, for ServiceAccounts whose name is not their module's. */
  identityBindings?: Readonly<Record<string, string>>;
}

export type PolicySnapshotSource = Source<PolicySnapshot>;

/** A verified peer identity (`spiffe://<td>/ns/<ns>/sa/<sa>`). */
export interface PeerIdentity {
  spiffeId: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  /** Validity of the peer's leaf certificate, epoch ms. */
  notBefore: number;
  notAfter: number;
}

/** The module a caller belongs to; undefined: unknown caller (denied). */
export type IdentityResolver = (
  identity: PeerIdentity,
  snapshot: PolicySnapshot,
) => { module: string; namespace: string } | undefined;

/** Where the outbound proxy sends a call for a module. */
export interface ModuleDestination {
  module: string;
  /** The destination's inbound sidecar (port 15443 in a cluster). */
  address: { host: string; port: number };
  /** SPIFFE IDs the destination may present; any other server certificate is refused. */
  identities: readonly string[];
  /** TLS SNI to send; default none for IP addresses, the host otherwise. */
  serverName?: string;
}

/** Maps the host an app named (`finance.erp.svc`, `finance`) to a module's inbound sidecar. */
export type DestinationResolver = (
  host: string,
  port: number | undefined,
) => ModuleDestination | undefined;

/** Minimal logger (pkg/telemetry's Logger satisfies it). */
export interface SidecarLogger {
  debug?(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void;
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void;
}

/** Milliseconds since the epoch. */
export type Clock = () => number;
