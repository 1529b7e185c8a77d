/**
 * The workload side of identity: make a key pair (native crypto, EC P-256 by default), send a CSR
 * to the identity server, and keep a valid certificate from then on. Renewal happens at half the
 * lifetime with ±10% jitter (so replicas do not renew in lockstep), authenticates with the current
 * certificate (falling back to the token), retries with exponential backoff, and keeps using the
 * current certificate until it actually expires. Every change is announced to listeners so TLS
 * servers can call `setSecureContext` without dropping open connections.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';

import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';

import { generateKeys, privateKeyPem, type KeyType } from '../ca/keys.js';
import { decodeCertificates } from '../ca/pem.js';
import { buildCsr } from '../ca/pkcs10.js';
import { spiffeIdOfCertificate } from '../ca/spiffe.js';
import { methods, unary } from '../proto/erpguard-proto.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { counter, gauge } from '../telemetry/metrics.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import {
  channelCredentials,
  channelOptions,
  type ServerConnection,
  type WorkloadMaterial,
} from './tls.js';

export type { WorkloadMaterial };

export interface WorkloadIdentityClientOptions extends ServerConnection {
  /** Roots that vouch for the identity server before the first certificate (mounted bundle). */
  trustBundlePem: string;
  /**
   * Reads the projected ServiceAccount token (audience `erpguard`). Called for each request
   * because kubelet rotates the file. Optional once a certificate exists (mTLS renewal).
   */
  token?: () => string | Promise<string>;
  /** Key type of each new key pair (a fresh key per certificate). Default ec-p256. */
  keyType?: KeyType;
  /** Requested lifetime; the server clamps it and policies may shorten it. */
  ttlSeconds?: number;
  /** Renew at this fraction of the lifetime (default 0.5) ... */
  renewAtFraction?: number;
  /** ... plus or minus this fraction of it (default 0.1). */
  jitterFraction?: number;
  backoff?: BackoffOptions;
  /** Per-request deadline (default 10 s). */
  requestTimeoutMs?: number;
  clock?: () => number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
  logger?: Logger;
  registry?: Registry;
}

export type MaterialListener = (material: WorkloadMaterial | null) => void;

class StoppedError extends Error {
  override name = 'StoppedError';
}

/** Checks a SignCertificate answer before anything uses it. */
function validateIssued(
  keyPem: string,
  chainPem: string,
  bundlePem: string,
): { spiffeId: string; notBefore: Date; notAfter: Date } {
  const chain = decodeCertificates(chainPem).map((der) => new X509Certificate(der));
  const roots = decodeCertificates(bundlePem).map((der) => new X509Certificate(der));
  const leaf = chain[0];
  if (leaf === undefined) throw new Error('empty certificate chain');
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new Error('issued certificate does not match our key');
  }
  const spiffeId = spiffeIdOfCertificate(leaf);
  if (spiffeId === null) throw new Error('issued certificate carries no single SPIFFE ID');
  chain.forEach((cert, i) => {
    const next = chain[i + 1];
    if (next !== undefined && !cert.verify(next.publicKey)) {
      throw new Error(`certificate ${i} of the chain is not signed by certificate ${i + 1}`);
    }
  });
  const top = chain[chain.length - 1] as X509Certificate;
  if (!roots.some((root) => top.checkIssued(root) && top.verify(root.publicKey))) {
    throw new Error('issued chain does not lead to a root of the returned trust bundle');
  }
  return { spiffeId, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
}

export class WorkloadIdentityClient {
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly listeners = new Set<MaterialListener>();
  private material: WorkloadMaterial | null = null;
  private trustBundle: string;
  private inFlight: Promise<WorkloadMaterial> | null = null;
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private installedOnce = false;
  private wake: (() => void) | null = null;
  private readonly metrics;

  constructor(private readonly options: WorkloadIdentityClientOptions) {
    this.clock = options.clock ?? Date.now;
    this.random = options.random ?? Math.random;
    this.log = options.logger ?? silentLogger();
    this.backoff = new Backoff(options.backoff, this.random);
    this.trustBundle = options.trustBundlePem;
    const registry = options.registry;
    this.metrics =
      registry === undefined
        ? null
        : {
            expiry: gauge(registry, {
              name: 'erpguard_cert_expiration_timestamp_seconds',
              help: 'NotAfter of the workload certificate in use (alert when close to time()).',
            }),
            renewals: counter(registry, {
              name: 'erpguard_cert_renewals_total',
              help: 'Certificate requests by outcome.',
              labelNames: ['result'],
            }),
          };
  }

  /**
   * Gets the first certificate, retrying with backoff until it succeeds, then keeps renewing.
   * Rejects only if stop() is called first.
   */
  async start(): Promise<WorkloadMaterial> {
    for (;;) {
      if (this.stopped) throw new StoppedError('workload identity client stopped');
      try {
        return await this.renewNow();
      } catch (error) {
        if (this.stopped) throw new StoppedError('workload identity client stopped');
        const delay = this.backoff.next();
        this.log.warn('first certificate request failed; retrying', {
          err: error,
          retryInMs: delay,
        });
        await this.sleep(delay);
      }
    }
  }

  /** The material in use, or null before the first certificate and after expiry. */
  current(): WorkloadMaterial | null {
    return this.material;
  }

  /** Called with each new material, and with null when the certificate expired unrenewed. */
  onChange(listener: MaterialListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Requests a new certificate now (one request at a time: concurrent callers share it). On
   * success the renewal timer restarts; on failure a retry is scheduled with backoff.
   */
  renewNow(): Promise<WorkloadMaterial> {
    if (this.inFlight !== null) return this.inFlight;
    const attempt = this.request().finally(() => {
      this.inFlight = null;
    });
    this.inFlight = attempt;
    attempt.then(
      (material) => {
        this.backoff.reset();
        this.install(material);
      },
      (error: unknown) => {
        this.metrics?.renewals.inc({ result: 'failure' });
        // Before the first certificate, start() owns the retries.
        if (this.installedOnce) this.scheduleRetry(error);
      },
    );
    return attempt;
  }

  /**
   * Replaces the roots used to verify peers (from policy snapshots, so a root rotation reaches
   * workloads before their next renewal). Announced like any other change.
   */
  setTrustBundle(pem: string): void {
    if (pem === '' || pem === this.trustBundle) return;
    try {
      decodeCertificates(pem);
    } catch (error) {
      this.log.error('ignoring malformed trust bundle', { err: error });
      return;
    }
    this.trustBundle = pem;
    if (this.material !== null && this.material.trustBundlePem !== pem) {
      this.material = { ...this.material, trustBundlePem: pem };
      this.log.info('trust bundle updated', { roots: decodeCertificates(pem).length });
      this.emit(this.material);
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
  }

  // === internals ===

  private async request(): Promise<WorkloadMaterial> {
    const keys = await generateKeys(this.options.keyType ?? 'ec-p256');
    const keyPem = privateKeyPem(keys.privateKey);
    const csr = buildCsr(keys.privateKey);
    const current = this.material;
    const now = this.clock();
    const canUseCertificate = current !== null && current.notAfter.getTime() > now + 5_000;
    let response;
    if (canUseCertificate) {
      try {
        response = await this.call(csr, current, false);
      } catch (error) {
        // E.g. our root was removed or the identity server lost its state: the token still works.
        const code = (error as { code?: number }).code;
        if (this.options.token === undefined || code !== grpc.status.UNAUTHENTICATED) throw error;
        this.log.warn('renewal with certificate refused; retrying with token', { err: error });
        response = await this.call(csr, null, true);
      }
    } else {
      response = await this.call(csr, null, true);
    }
    const checked = validateIssued(keyPem, response.certificateChain, response.trustBundle);
    if (current !== null && checked.spiffeId !== current.spiffeId) {
      this.log.warn('identity changed across renewal', {
        from: current.spiffeId,
        to: checked.spiffeId,
      });
    }
    this.trustBundle = response.trustBundle;
    return {
      keyPem,
      certificateChainPem: response.certificateChain,
      trustBundlePem: response.trustBundle,
      notBefore: checked.notBefore,
      notAfter: checked.notAfter,
      spiffeId: checked.spiffeId,
    };
  }

  private async call(
    csr: string,
    material: WorkloadMaterial | null,
    withToken: boolean,
  ): Promise<{ certificateChain: string; trustBundle: string }> {
    const metadata = new grpc.Metadata();
    if (withToken) {
      if (this.options.token === undefined) {
        throw new Error('no certificate to renew with and no token source configured');
      }
      const token = (await this.options.token()).trim();
      metadata.set('authorization', `Bearer ${token}`);
    }
    const client = new grpc.Client(
      this.options.target,
      channelCredentials(this.options, this.trustBundle, material ?? undefined),
      channelOptions(this.options),
    );
    try {
      return await unary(
        client,
        methods.signCertificate,
        { csr, ttlSeconds: this.options.ttlSeconds ?? 0 },
        metadata,
        { deadline: Date.now() + (this.options.requestTimeoutMs ?? 10_000) },
      );
    } finally {
      client.close();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private install(material: WorkloadMaterial): void {
    if (this.stopped) return;
    this.installedOnce = true;
    this.material = material;
    this.metrics?.expiry.set(material.notAfter.getTime() / 1000);
    this.metrics?.renewals.inc({ result: 'success' });
    const now = this.clock();
    const remaining = material.notAfter.getTime() - now;
    const fraction = this.options.renewAtFraction ?? 0.5;
    const jitter = this.options.jitterFraction ?? 0.1;
    const delay = Math.max(0, remaining * (fraction + (this.random() * 2 - 1) * jitter));
    this.log.info('certificate installed', {
      spiffeId: material.spiffeId,
      notAfter: material.notAfter.toISOString(),
      renewInMs: Math.round(delay),
    });
    this.setRenewTimer(delay);
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.expire(material), Math.min(remaining, 2 ** 31 - 1));
    this.expiryTimer.unref();
    this.emit(material);
  }

  private scheduleRetry(error: unknown): void {
    if (this.stopped) return;
    const material = this.material;
    const delay = this.backoff.next();
    const expiresInMs = material === null ? 0 : material.notAfter.getTime() - this.clock();
    this.log.warn('certificate renewal failed; keeping the current certificate', {
      err: error,
      retryInMs: delay,
      expiresInMs,
    });
    this.setRenewTimer(delay);
  }

  private setRenewTimer(delay: number): void {
    if (this.renewTimer !== undefined) clearTimeout(this.renewTimer);
    if (this.stopped) return;
    this.renewTimer = setTimeout(
      () => {
        this.renewNow().catch(() => undefined); // failures are scheduled for retry inside
      },
      Math.min(delay, 2 ** 31 - 1),
    );
    this.renewTimer.unref();
  }

  private expire(material: WorkloadMaterial): void {
    if (this.material !== material) return;
    this.material = null;
    this.log.error('certificate expired without renewal; failing closed', {
      spiffeId: material.spiffeId,
      notAfter: material.notAfter.toISOString(),
    });
    // Renewal keeps retrying on its backoff timer, with the token from now on.
    this.emit(null);
  }

  private emit(material: WorkloadMaterial | null): void {
    for (const listener of this.listeners) {
      try {
        listener(material);
      } catch (error) {
        this.log.error('material listener failed', { err: error });
      }
    }
  }
}
