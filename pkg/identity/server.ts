/**
 * The identity server: gRPC over TLS with a certificate from our own CA, serving
 *   Identity.SignCertificate  workload certificates for the authenticated caller,
 *   Policy.Watch              a stream of the caller module's policy snapshots,
 *   Admin.*                   revocation, for admin identities only.
 *
 * Authentication: `authorization: Bearer <token>` through the Authenticator port, or a client
 * certificate from this CA (renewals, policy streams). Node's TLS layer verifies the client
 * chain against the live trust bundle; the SPIFFE ID is then read from the one URI SAN.
 */
import type { SecureContextOptions } from 'node:tls';

import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';

import type { CertificateAuthority, ServingCertificate } from '../ca/authority.js';
import {
  parseSpiffeId,
  spiffeIdFor,
  spiffeIdOfCertificate,
  type WorkloadName,
} from '../ca/spiffe.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import {
  services,
  type ListRevocationsRequest,
  type ListRevocationsResponse,
  type PolicySnapshotMessage,
  type RevokedIdentityMessage,
  type RevokeRequest,
  type SignCertificateRequest,
  type SignCertificateResponse,
  type UnrevokeRequest,
  type UnrevokeResponse,
  type WatchRequest,
} from '../proto/erpguard-proto.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { counter, gauge, histogram } from '../telemetry/metrics.js';
import type { Authenticator, ModuleResolver } from './authenticator.js';
import { IdentityError, IdentityReason, toFailure } from './errors.js';
import type { PolicyIndex, PolicySnapshot, Revocation } from './policy-index.js';
import { KeyedRateLimiter } from './rate-limiter.js';

export interface IdentityServerLimits {
  /** Largest CSR accepted, PEM bytes (default 8 KiB; the CA enforces it too). */
  maxCsrBytes?: number;
  /** Per-identity signing rate (default 10/s sustained, bursts of 100: a whole Deployment rolling). */
  signPerSecond?: number;
  signBurst?: number;
  /** SignCertificate calls in progress at once, server-wide (default 512). */
  maxConcurrentSigns?: number;
  /** Open Policy.Watch streams per identity (default 1024: one per replica). */
  maxStreamsPerIdentity?: number;
}

export interface IdentityServerOptions {
  ca: CertificateAuthority;
  authenticator: Authenticator;
  policyIndex: PolicyIndex;
  /** Who is module X: consulted when the authenticator gives no module. Default: the index bindings. */
  moduleResolver?: ModuleResolver;
  registry?: Registry;
  logger?: Logger;
  listen: { host: string; port: number };
  /** Names in the server's own certificate. Default: localhost, 127.0.0.1, ::1 and listen.host. */
  serving?: {
    dnsNames?: readonly string[];
    ipAddresses?: readonly string[];
    identity?: WorkloadName;
    ttlSeconds?: number;
  };
  /** SPIFFE IDs allowed to call Admin.* (e.g. the erpguard CLI's ServiceAccount). */
  adminIdentities?: readonly string[];
  limits?: IdentityServerLimits;
  clock?: () => number;
  /** How often ended revocations are dropped from snapshots (default 60 s). */
  revocationPruneIntervalMs?: number;
}

export interface IdentityServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** The server's current certificate (clients may pin its SPIFFE ID). */
  servingCertificate(): ServingCertificate;
  /** Ends policy streams with UNAVAILABLE, then stops the server. */
  close(): Promise<void>;
}

interface Caller extends WorkloadName {
  spiffeId: string;
  module?: string;
  via: 'token' | 'certificate';
}

/** What handlers read from any kind of call. */
type CallInfo = Pick<
  grpc.ServerUnaryCall<unknown, unknown>,
  'metadata' | 'getAuthContext' | 'getPeer'
>;

interface OpenStream {
  caller: Caller;
  end(status: Partial<grpc.StatusObject>): void;
}

const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_REVOCATION_MS = 366 * 24 * 3600 * 1000;
const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/**
 * Server credentials whose key, certificate and CA bundle can be replaced at run time. grpc-js
 * applies updates with `setSecureContext`: open connections keep their session, new handshakes
 * use the new material.
 */
class RotatingServerCredentials extends grpc.ServerCredentials {
  constructor(initial: SecureContextOptions) {
    // Ask for a client certificate but do not require one: first contact uses a token.
    super({ requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, initial);
  }
  update(options: SecureContextOptions): void {
    this.updateSecureContextOptions(options);
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function toSnapshotMessage(s: PolicySnapshot): PolicySnapshotMessage {
  return {
    version: s.version,
    namespace: s.namespace,
    module: s.module,
    policies: s.policies.map((p) => JSON.stringify(p)),
    revokedIdentities: s.revokedIdentities.map(toRevocationMessage),
    trustBundle: s.trustBundlePem,
    identityBindings: s.identityBindings.map((b) => ({ spiffeId: b.spiffeId, module: b.module })),
    certificateTtlSeconds: s.certificateTtlSeconds ?? 0,
  };
}

function toRevocationMessage(r: Revocation): RevokedIdentityMessage {
  return { spiffeId: r.spiffeId, untilUnixMs: r.until.getTime(), reason: r.reason };
}

class IdentityServerImpl implements IdentityServer {
  private readonly ca: CertificateAuthority;
  private readonly index: PolicyIndex;
  private readonly authenticator: Authenticator;
  private readonly moduleResolver: ModuleResolver | undefined;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly server: grpc.Server;
  private readonly limiter: KeyedRateLimiter;
  private readonly admins: ReadonlySet<string>;
  private readonly limits: Required<IdentityServerLimits>;
  private readonly streams = new Set<OpenStream>();
  private readonly streamsByIdentity = new Map<string, number>();
  private readonly cleanups: (() => void)[] = [];
  private credentials!: RotatingServerCredentials;
  private serving!: ServingCertificate;
  private renewTimer: NodeJS.Timeout | undefined;
  private signsInFlight = 0;
  private closed = false;
  port = 0;

  private readonly metrics;

  constructor(private readonly options: IdentityServerOptions) {
    this.ca = options.ca;
    this.index = options.policyIndex;
    this.authenticator = options.authenticator;
    this.moduleResolver = options.moduleResolver;
    this.log = options.logger ?? silentLogger();
    this.clock = options.clock ?? Date.now;
    this.admins = new Set(options.adminIdentities ?? []);
    this.limits = {
      maxCsrBytes: options.limits?.maxCsrBytes ?? 8 * 1024,
      signPerSecond: options.limits?.signPerSecond ?? 10,
      signBurst: options.limits?.signBurst ?? 100,
      maxConcurrentSigns: options.limits?.maxConcurrentSigns ?? 512,
      maxStreamsPerIdentity: options.limits?.maxStreamsPerIdentity ?? 1024,
    };
    this.limiter = new KeyedRateLimiter(
      { perSecond: this.limits.signPerSecond, burst: this.limits.signBurst },
      this.clock,
    );
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    const registry = options.registry;
    this.metrics =
      registry === undefined
        ? null
        : {
            issued: counter(registry, {
              name: 'erpguard_certificates_issued_total',
              help: 'SignCertificate outcomes: result is issued, refused (caller at fault) or error (server at fault).',
              labelNames: ['result', 'reason'],
            }),
            signDuration: histogram(registry, {
              name: 'erpguard_certificate_sign_duration_seconds',
              help: 'Time to verify a CSR and sign the certificate.',
              buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
            }),
            streams: gauge(registry, {
              name: 'erpguard_policy_streams_active',
              help: 'Open Policy.Watch streams.',
            }),
            pushes: counter(registry, {
              name: 'erpguard_policy_snapshot_pushes_total',
              help: 'Policy snapshots sent on watch streams (initial and updates).',
            }),
            version: gauge(registry, {
              name: 'erpguard_policy_snapshot_version',
              help: 'Latest policy index version.',
            }),
            issuerExpiry: gauge(registry, {
              name: 'erpguard_ca_issuer_expiration_timestamp_seconds',
              help: 'When the certificate that issues workload certificates expires.',
            }),
            trustAnchors: gauge(registry, {
              name: 'erpguard_ca_trust_anchors',
              help: 'Roots in the trust bundle.',
            }),
          };
  }

  async start(): Promise<void> {
    this.index.setTrustBundle(this.ca.trustBundlePem());
    this.serving = this.issueServing();
    this.credentials = new RotatingServerCredentials(this.contextOptions());
    this.scheduleServingRenewal();
    this.updateCaMetrics();

    this.cleanups.push(
      this.ca.onChange((change) => {
        if (change === 'issuer') {
          this.renewServing('issuer changed');
        } else {
          this.index.setTrustBundle(this.ca.trustBundlePem());
          this.credentials.update(this.contextOptions());
          this.updateCaMetrics();
        }
      }),
      this.index.onRevoke((revocation) => this.endStreamsOf(revocation)),
    );
    const prune = setInterval(() => {
      const dropped = this.index.pruneExpired();
      if (dropped > 0) this.log.info('ended revocations dropped', { count: dropped });
      this.metrics?.version.set(this.index.version);
    }, this.options.revocationPruneIntervalMs ?? 60_000);
    prune.unref();
    this.cleanups.push(() => clearInterval(prune));

    this.server.addService(services.identity, {
      SignCertificate: (
        call: grpc.ServerUnaryCall<SignCertificateRequest, SignCertificateResponse>,
        callback: grpc.sendUnaryData<SignCertificateResponse>,
      ) => {
        void this.signCertificate(call, callback);
      },
    });
    this.server.addService(services.policy, {
      Watch: (call: grpc.ServerWritableStream<WatchRequest, PolicySnapshotMessage>) => {
        void this.watch(call);
      },
    });
    this.server.addService(services.admin, {
      Revoke: this.adminCall<RevokeRequest, RevokedIdentityMessage>('Revoke', (req, caller) =>
        this.revoke(req, caller),
      ),
      Unrevoke: this.adminCall<UnrevokeRequest, UnrevokeResponse>('Unrevoke', (req, caller) => {
        const wasRevoked = this.index.unrevoke(req.spiffeId);
        this.log.warn('revocation lifted', {
          spiffeId: req.spiffeId,
          by: caller.spiffeId,
          wasRevoked,
        });
        return { wasRevoked };
      }),
      ListRevocations: this.adminCall<ListRevocationsRequest, ListRevocationsResponse>(
        'ListRevocations',
        () => ({ revoked: this.index.revocations().map(toRevocationMessage) }),
      ),
    });

    const { host, port } = this.options.listen;
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, this.credentials, (error, bound) => {
        if (error !== null)
          reject(
            new ErpguardError(
              ErrorCode.Unavailable,
              `cannot listen on ${address}: ${error.message}`,
              { cause: error },
            ),
          );
        else resolve(bound);
      });
    });
    this.log.info('identity server listening', { address, port: this.port });
  }

  servingCertificate(): ServingCertificate {
    return this.serving;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    for (const cleanup of this.cleanups) cleanup();
    for (const stream of [...this.streams]) {
      stream.end({ code: grpc.status.UNAVAILABLE, details: 'Unavailable: server shutting down' });
    }
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 5_000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    this.log.info('identity server stopped');
  }

  // === authentication ===

  private async authenticate(call: CallInfo): Promise<Caller> {
    const header = call.metadata.get('authorization');
    if (header.length > 0) {
      const value = header[0];
      const match = header.length === 1 && typeof value === 'string' ? BEARER.exec(value) : null;
      const token = match?.[1];
      if (token === undefined) {
        throw new IdentityError(
          ErrorCode.Unauthenticated,
          IdentityReason.MalformedAuthorization,
          'authorization metadata is not "Bearer <token>"',
        );
      }
      let result;
      try {
        result = await this.authenticator.authenticate(token);
      } catch (error) {
        if (error instanceof ErpguardError && error.code === ErrorCode.Unauthenticated) {
          throw new IdentityError(
            ErrorCode.Unauthenticated,
            IdentityReason.TokenRejected,
            error.message,
            { cause: error },
          );
        }
        throw new IdentityError(
          ErrorCode.Unavailable,
          IdentityReason.AuthenticatorUnavailable,
          `authenticator failed: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
      if (result === null) {
        throw new IdentityError(
          ErrorCode.Unauthenticated,
          IdentityReason.TokenInvalid,
          'token not recognised',
        );
      }
      const caller: Caller = {
        namespace: result.namespace,
        serviceAccount: result.serviceAccount,
        spiffeId: spiffeIdFor(this.ca.trustDomain, result),
        via: 'token',
      };
      if (result.module !== undefined) caller.module = result.module;
      return caller;
    }
    // getAuthContext only returns a certificate that Node's TLS layer verified against `ca`.
    const peer = call.getAuthContext().sslPeerCertificate;
    if (peer !== undefined) {
      const spiffeId = spiffeIdOfCertificate(peer);
      const parsed = spiffeId === null ? null : parseSpiffeId(spiffeId);
      if (spiffeId === null || parsed === null || parsed.trustDomain !== this.ca.trustDomain) {
        throw new IdentityError(
          ErrorCode.Unauthenticated,
          IdentityReason.PeerIdentityInvalid,
          'client certificate carries no SPIFFE ID of this trust domain',
        );
      }
      return {
        namespace: parsed.namespace,
        serviceAccount: parsed.serviceAccount,
        spiffeId,
        via: 'certificate',
      };
    }
    throw new IdentityError(
      ErrorCode.Unauthenticated,
      IdentityReason.NoCredentials,
      'no bearer token and no verified client certificate',
    );
  }

  private checkNotRevoked(caller: Caller): void {
    const revocation = this.index.revocationOf(caller.spiffeId);
    if (revocation !== null) {
      throw new IdentityError(
        ErrorCode.PermissionDenied,
        IdentityReason.IdentityRevoked,
        `identity revoked until ${revocation.until.toISOString()}`,
      );
    }
  }

  private async moduleOf(caller: Caller): Promise<string | null> {
    if (caller.module !== undefined) return caller.module;
    const resolved =
      this.moduleResolver === undefined ? null : await this.moduleResolver.moduleOf(caller);
    return resolved ?? this.index.moduleOf(caller.namespace, caller.serviceAccount);
  }

  // === Identity.SignCertificate ===

  private async signCertificate(
    call: grpc.ServerUnaryCall<SignCertificateRequest, SignCertificateResponse>,
    callback: grpc.sendUnaryData<SignCertificateResponse>,
  ): Promise<void> {
    let caller: Caller | undefined;
    if (this.signsInFlight >= this.limits.maxConcurrentSigns) {
      this.refuse(
        'SignCertificate',
        new IdentityError(
          ErrorCode.RateLimited,
          IdentityReason.ServerBusy,
          'too many signing requests in flight',
        ),
        call,
        callback,
      );
      return;
    }
    this.signsInFlight++;
    try {
      caller = await this.authenticate(call);
      this.checkNotRevoked(caller);
      if (!this.limiter.tryTake(caller.spiffeId)) {
        throw new IdentityError(
          ErrorCode.RateLimited,
          IdentityReason.RateLimited,
          'signing rate limit for this identity exceeded',
        );
      }
      const request = call.request;
      if (
        typeof request.csr !== 'string' ||
        Buffer.byteLength(request.csr) > this.limits.maxCsrBytes
      ) {
        throw new ErpguardError(
          ErrorCode.InputTooLarge,
          `CSR is larger than ${this.limits.maxCsrBytes} bytes`,
        );
      }
      const module = await this.moduleOf(caller);
      const policyTtl =
        module === null ? null : this.index.certificateTtlFor(caller.namespace, module);
      const wanted = [request.ttlSeconds > 0 ? request.ttlSeconds : null, policyTtl].filter(
        (v): v is number => v !== null,
      );
      const started = process.hrtime.bigint();
      const issued = this.ca.sign({
        csrPem: request.csr,
        identity: caller,
        ...(wanted.length > 0 ? { ttlSeconds: Math.min(...wanted) } : {}),
      });
      this.metrics?.signDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.metrics?.issued.inc({ result: 'issued', reason: IdentityReason.Issued });
      this.log.info('certificate issued', {
        spiffeId: issued.spiffeId,
        serial: issued.serialHex,
        notAfter: issued.notAfter.toISOString(),
        keyType: issued.keyType,
        via: caller.via,
        peer: call.getPeer(),
      });
      callback(null, {
        certificateChain: issued.certificateChainPem,
        trustBundle: issued.trustBundlePem,
        notAfterUnixMs: issued.notAfter.getTime(),
        notBeforeUnixMs: issued.notBefore.getTime(),
        spiffeId: issued.spiffeId,
      });
    } catch (error) {
      this.refuse('SignCertificate', error, call, callback, caller);
    } finally {
      this.signsInFlight--;
    }
  }

  private refuse<Res>(
    rpc: string,
    error: unknown,
    call: CallInfo,
    callback: grpc.sendUnaryData<Res>,
    caller?: Caller,
  ): void {
    const failure = toFailure(error);
    if (rpc === 'SignCertificate')
      this.metrics?.issued.inc({ result: failure.result, reason: failure.reason });
    const fields = {
      rpc,
      reason: failure.reason,
      code: failure.code,
      message: failure.message,
      spiffeId: caller?.spiffeId,
      peer: call.getPeer(),
    };
    if (failure.result === 'error') this.log.error('request failed', { ...fields, err: error });
    else this.log.warn('request refused', fields);
    callback(failure.status, null);
  }

  // === Policy.Watch ===

  private async watch(
    call: grpc.ServerWritableStream<WatchRequest, PolicySnapshotMessage>,
  ): Promise<void> {
    let caller: Caller | undefined;
    let namespace: string;
    let module: string;
    try {
      if (this.closed)
        throw new IdentityError(
          ErrorCode.Unavailable,
          IdentityReason.ShuttingDown,
          'server shutting down',
        );
      caller = await this.authenticate(call);
      this.checkNotRevoked(caller);
      const own = await this.moduleOf(caller);
      if (own === null) {
        throw new IdentityError(
          ErrorCode.PermissionDenied,
          IdentityReason.ModuleUnbound,
          `no module is bound to ${caller.spiffeId}`,
        );
      }
      namespace = call.request.namespace === '' ? caller.namespace : call.request.namespace;
      module = call.request.module === '' ? own : call.request.module;
      if (namespace !== caller.namespace || module !== own) {
        throw new IdentityError(
          ErrorCode.PermissionDenied,
          IdentityReason.ModuleMismatch,
          `${caller.spiffeId} may watch only ${caller.namespace}/${own}, not ${namespace}/${module}`,
        );
      }
      if ((this.streamsByIdentity.get(caller.spiffeId) ?? 0) >= this.limits.maxStreamsPerIdentity) {
        throw new IdentityError(
          ErrorCode.RateLimited,
          IdentityReason.TooManyStreams,
          'too many policy streams for this identity',
        );
      }
    } catch (error) {
      const failure = toFailure(error);
      const fields = {
        rpc: 'Watch',
        reason: failure.reason,
        code: failure.code,
        message: failure.message,
        spiffeId: caller?.spiffeId,
        peer: call.getPeer(),
      };
      if (failure.result === 'error') this.log.error('request failed', { ...fields, err: error });
      else this.log.warn('request refused', fields);
      call.emit('error', failure.status);
      return;
    }
    if (call.cancelled) return;
    this.openStream(call, caller, namespace, module);
  }

  private openStream(
    call: grpc.ServerWritableStream<WatchRequest, PolicySnapshotMessage>,
    caller: Caller,
    namespace: string,
    module: string,
  ): void {
    let done = false;
    let blocked = false;
    let pending: PolicySnapshot | null = null;
    const send = (snapshot: PolicySnapshot): void => {
      if (done) return;
      if (blocked) {
        pending = snapshot; // only the newest snapshot matters to a slow reader
        return;
      }
      this.metrics?.pushes.inc();
      this.metrics?.version.set(this.index.version);
      if (!call.write(toSnapshotMessage(snapshot))) {
        blocked = true;
        call.once('drain', () => {
          blocked = false;
          const next = pending;
          pending = null;
          if (next !== null) send(next);
        });
      }
    };
    let unsubscribe = (): void => undefined;
    const stream: OpenStream = {
      caller,
      end: (status) => {
        if (done) return;
        cleanup();
        call.emit('error', status);
      },
    };
    const cleanup = (): void => {
      if (done) return;
      done = true;
      unsubscribe();
      this.streams.delete(stream);
      const count = (this.streamsByIdentity.get(caller.spiffeId) ?? 1) - 1;
      if (count <= 0) this.streamsByIdentity.delete(caller.spiffeId);
      else this.streamsByIdentity.set(caller.spiffeId, count);
      this.metrics?.streams.dec();
      this.log.debug('policy stream closed', { spiffeId: caller.spiffeId, namespace, module });
    };
    this.streams.add(stream);
    this.streamsByIdentity.set(
      caller.spiffeId,
      (this.streamsByIdentity.get(caller.spiffeId) ?? 0) + 1,
    );
    this.metrics?.streams.inc();
    call.on('cancelled', cleanup);
    call.on('close', cleanup);
    call.on('error', cleanup);
    call.on('finish', cleanup);
    this.log.info('policy stream opened', {
      spiffeId: caller.spiffeId,
      namespace,
      module,
      via: caller.via,
    });
    send(this.index.snapshot(namespace, module)); // a new or resumed stream gets the current state first
    unsubscribe = this.index.subscribe(namespace, module, send);
  }

  private endStreamsOf(revocation: Revocation): void {
    for (const stream of [...this.streams]) {
      if (stream.caller.spiffeId !== revocation.spiffeId) continue;
      const failure = toFailure(
        new IdentityError(
          ErrorCode.PermissionDenied,
          IdentityReason.IdentityRevoked,
          'identity revoked',
        ),
      );
      stream.end(failure.status);
    }
  }

  // === Admin ===

  private adminCall<Req, Res>(
    rpc: string,
    handler: (request: Req, caller: Caller) => Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let caller: Caller | undefined;
      this.authenticate(call)
        .then((authenticated) => {
          caller = authenticated;
          if (!this.admins.has(authenticated.spiffeId)) {
            throw new IdentityError(
              ErrorCode.PermissionDenied,
              IdentityReason.NotAdmin,
              `${authenticated.spiffeId} is not an admin identity`,
            );
          }
          callback(null, handler(call.request, authenticated));
        })
        .catch((error: unknown) => this.refuse(rpc, error, call, callback, caller));
    };
  }

  private revoke(request: RevokeRequest, caller: Caller): RevokedIdentityMessage {
    const parsed = parseSpiffeId(request.spiffeId);
    if (parsed === null || parsed.trustDomain !== this.ca.trustDomain) {
      throw new IdentityError(
        ErrorCode.InvalidArgument,
        IdentityReason.InvalidRequest,
        `spiffeId: not a workload SPIFFE ID of ${this.ca.trustDomain}`,
      );
    }
    const now = this.clock();
    const until =
      request.untilUnixMs > 0 ? request.untilUnixMs : defaultRevocationEnd(this.ca, now).getTime();
    if (until <= now || until > now + MAX_REVOCATION_MS) {
      throw new IdentityError(
        ErrorCode.InvalidArgument,
        IdentityReason.InvalidRequest,
        'untilUnixMs: must be in the future and within 366 days',
      );
    }
    const revocation = this.index.revoke(request.spiffeId, new Date(until), request.reason);
    this.log.warn('identity revoked', {
      spiffeId: revocation.spiffeId,
      until: revocation.until.toISOString(),
      reason: revocation.reason,
      by: caller.spiffeId,
    });
    return toRevocationMessage(revocation);
  }

  // === serving certificate ===

  private issueServing(): ServingCertificate {
    const host = this.options.listen.host;
    const isIp = /^[\d.]+$/.test(host) || host.includes(':');
    const dnsNames = this.options.serving?.dnsNames ?? [
      'localhost',
      ...(isIp || host === 'localhost' || host === '' ? [] : [host]),
    ];
    const ipAddresses = this.options.serving?.ipAddresses ?? [
      '127.0.0.1',
      '::1',
      ...(isIp && host !== '0.0.0.0' && host !== '::' && host !== '127.0.0.1' && host !== '::1'
        ? [host]
        : []),
    ];
    const request: Parameters<CertificateAuthority['issueServingCertificate']>[0] = {
      dnsNames,
      ipAddresses,
    };
    if (this.options.serving?.identity !== undefined)
      request.identity = this.options.serving.identity;
    if (this.options.serving?.ttlSeconds !== undefined)
      request.ttlSeconds = this.options.serving.ttlSeconds;
    return this.ca.issueServingCertificate(request);
  }

  private contextOptions(): SecureContextOptions {
    return {
      key: this.serving.keyPem,
      cert: this.serving.certificateChainPem,
      ca: this.ca.trustBundlePem(),
    };
  }

  private renewServing(why: string): void {
    try {
      this.serving = this.issueServing();
      this.credentials.update(this.contextOptions());
      this.updateCaMetrics();
      this.log.info('serving certificate renewed', {
        why,
        notAfter: this.serving.notAfter.toISOString(),
      });
    } catch (error) {
      this.log.error('serving certificate renewal failed', { why, err: error });
    }
    this.scheduleServingRenewal();
  }

  private scheduleServingRenewal(): void {
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    if (this.closed) return;
    const remaining = this.serving.notAfter.getTime() - this.clock();
    // Half-life, and retry within a minute if the last renewal failed and little time remains.
    const delay = Math.max(Math.min(remaining / 2, 2 ** 31 - 1), 1_000);
    this.renewTimer = setTimeout(() => this.renewServing('half-life'), delay);
    this.renewTimer.unref();
  }

  private updateCaMetrics(): void {
    this.metrics?.issuerExpiry.set(this.ca.issuerNotAfter().getTime() / 1000);
    this.metrics?.trustAnchors.set(this.ca.trustAnchors().length);
    this.metrics?.version.set(this.index.version);
  }
}

/**
 * The default end of a revocation: when every certificate issued before `nowMs` has expired.
 * For in-process revocation: `index.revoke(id, defaultRevocationEnd(ca, Date.now()))`.
 */
export function defaultRevocationEnd(ca: CertificateAuthority, nowMs: number): Date {
  return new Date(nowMs + (ca.maxTtlSeconds + ca.backdateSeconds) * 1000);
}

/**
 * Starts the identity server. Listen on port 0 for an ephemeral port (see `port`).
 */
export async function startIdentityServer(options: IdentityServerOptions): Promise<IdentityServer> {
  const server = new IdentityServerImpl(options);
  try {
    await server.start();
  } catch (error) {
    await server.close().catch(() => undefined);
    throw error;
  }
  return server;
}
