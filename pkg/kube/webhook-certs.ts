/**
 * Self-managed serving certificates for the admission webhook (chart value
 * `webhook.certificates: self`).
 *
 * A small CA of its own (not the workload CA: the API server must trust only what serves the
 * webhook) lives in a Secret shared by every replica, in the CA store format of pkg/ca. Each
 * replica issues its own short-lived serving certificate from it, writes `tls.crt`/`tls.key`
 * (and the bundle as `ca.crt`) into a directory the webhook server reloads from, and renews it
 * at two thirds of its lifetime. Only the leader changes shared state: it creates nothing the
 * others could not (first start races are settled by the store's optimistic writes), patches
 * `caBundle` into the webhook configurations, and rotates the root:
 *
 *   1. `rotateRootBefore` ahead of the root's expiry a new root is prepared: the bundle (and so
 *      every caBundle) holds old and new root, serving certificates still come from the old one;
 *   2. once the bundle carrying the new root was patched and `overlap` has passed, issuing
 *      switches to the new root; every replica notices on its next check and re-issues;
 *   3. `overlap` + the serving lifetime after that, the old root leaves the bundle.
 *
 * Every step is derived from the certificates themselves (no extra state), so a new leader
 * continues where the previous one stopped.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import type {
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
} from '@kubernetes/client-node';

import { createCertificateAuthority } from '../ca/authority.js';
import type { CertificateAuthority, ServingCertificate, TrustAnchorInfo } from '../ca/authority.js';
import type { CaKeyStore } from '../ca/store.js';
import { describeError, ErpguardError, ErrorCode } from '../errors/errors.js';
import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { isConflict, isNotFound, kubeError } from './errors.js';

export const DEFAULT_WEBHOOK_SECRET_NAME = 'erpguard-webhook-tls';
const DAY_S = 24 * 3600;

/** Puts a PEM bundle into the webhook configurations; true when every one now carries it. */
export interface CaBundlePatcher {
  ensure(bundlePem: string): Promise<boolean>;
}

export interface WebhookCertificateOptions {
  /** Where the webhook CA lives (a Secret in the cluster, memory or a directory in tests). */
  store: CaKeyStore;
  /** Names in the serving certificate, e.g. `erpguard.erpguard-system.svc`. */
  dnsNames: readonly string[];
  ipAddresses?: readonly string[];
  /** Directory for tls.crt, tls.key and ca.crt. */
  certDir: string;
  /** Whether this replica may change shared state (rotate, patch caBundle). */
  isLeader: () => boolean;
  /** Absent: caBundle is not patched (someone else distributes the bundle). */
  patcher?: CaBundlePatcher;
  /** Called after new files were written (e.g. the webhook server's reloadTls). */
  onServingChanged?: () => Promise<unknown> | void;
  /** Root lifetime (default 365 days). */
  rootTtlSeconds?: number;
  /** Serving certificate lifetime (default and maximum 24 h, the CA's ceiling). */
  servingTtlSeconds?: number;
  /** Start a root rotation this long before the root expires (default 60 days). */
  rotateRootBeforeSeconds?: number;
  /** New root trusted (caBundle) this long before it issues (default 1 h). */
  overlapSeconds?: number;
  /** How often the state is checked (default 60 s). */
  checkIntervalMs?: number;
  clock?: () => number;
  logger?: Logger;
}

export interface WebhookCertificateStatus {
  servingNotAfter: Date;
  issuingFingerprint: string;
  anchors: TrustAnchorInfo[];
  /** Whether the last patch put the current bundle into every webhook configuration. */
  caBundlePatched: boolean;
}

interface Served {
  certificate: ServingCertificate;
  issuingFingerprint: string;
}

export class WebhookCertificateManager {
  readonly certFile: string;
  readonly keyFile: string;
  readonly bundleFile: string;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly rootTtl: number;
  private readonly servingTtl: number;
  private readonly rotateBefore: number;
  private readonly overlap: number;
  private readonly checkIntervalMs: number;
  private ca: CertificateAuthority | undefined;
  private served: Served | undefined;
  private writtenBundle = '';
  private patched = false;
  private patchedBundle = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: WebhookCertificateOptions) {
    this.certFile = join(options.certDir, 'tls.crt');
    this.keyFile = join(options.certDir, 'tls.key');
    this.bundleFile = join(options.certDir, 'ca.crt');
    this.log = (options.logger ?? silentLogger()).child({ part: 'webhook-certs' });
    this.clock = options.clock ?? Date.now;
    this.rootTtl = options.rootTtlSeconds ?? 365 * DAY_S;
    this.servingTtl = Math.min(options.servingTtlSeconds ?? DAY_S, DAY_S);
    this.rotateBefore = options.rotateRootBeforeSeconds ?? 60 * DAY_S;
    this.overlap = options.overlapSeconds ?? 3600;
    this.checkIntervalMs = options.checkIntervalMs ?? 60_000;
    if (options.dnsNames.length + (options.ipAddresses?.length ?? 0) === 0) {
      throw new ErpguardError(ErrorCode.InvalidConfig, 'webhook certificate: no DNS name or IP');
    }
    // A rotation must finish (overlap, then old leaves expire) well before the old root does.
    if (this.rotateBefore <= this.overlap + this.servingTtl || this.rotateBefore >= this.rootTtl) {
      throw new ErpguardError(
        ErrorCode.InvalidConfig,
        'webhook certificate: need overlap + serving TTL < rotateRootBefore < root TTL',
      );
    }
  }

  /** Loads (or creates) the CA, writes the first serving certificate, then checks periodically. */
  async start(): Promise<void> {
    await this.check();
    if (this.served === undefined) {
      throw new ErpguardError(ErrorCode.Unavailable, 'webhook certificate: none could be issued');
    }
    this.timer = setInterval(() => void this.check(), this.checkIntervalMs);
    this.timer.unref();
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    return this.running;
  }

  /** The trust bundle the API server must hold (old and new root during a rotation). */
  caBundlePem(): string {
    return this.ca?.trustBundlePem() ?? '';
  }

  status(): WebhookCertificateStatus | undefined {
    if (this.served === undefined || this.ca === undefined) return undefined;
    return {
      servingNotAfter: this.served.certificate.notAfter,
      issuingFingerprint: this.served.issuingFingerprint,
      anchors: this.ca.trustAnchors(),
      caBundlePatched: this.patched,
    };
  }

  /** One pass (serialised): reload shared state, leader steps, re-issue if due. */
  check(): Promise<void> {
    const run = this.running.then(() => this.checkOnce());
    this.running = run.catch(() => undefined);
    return run;
  }

  private async checkOnce(): Promise<void> {
    if (this.stopped) return;
    try {
      // Reload every time: another replica may have rotated the root since.
      this.ca = await this.loadCa();
      if (this.options.isLeader()) await this.leaderSteps(this.ca);
      await this.ensureServing(this.ca);
    } catch (error) {
      this.log.warn('webhook certificate check failed; retrying', {
        error: describeError(error),
      });
      // Without any certificate the webhook cannot start: let start() fail.
      if (this.served === undefined) throw error;
    }
  }

  private async loadCa(): Promise<CertificateAuthority> {
    const make = (): Promise<CertificateAuthority> =>
      createCertificateAuthority({
        store: this.options.store,
        clock: this.clock,
        maxTtlSeconds: this.servingTtl,
        defaultTtlSeconds: this.servingTtl,
        minTtlSeconds: Math.min(300, this.servingTtl),
        root: { ttlSeconds: this.rootTtl, organization: 'erpguard webhook' },
        logger: this.log,
      });
    try {
      return await make();
    } catch (error) {
      // Two replicas created a root at once: the loser loads the winner's.
      if (error instanceof ErpguardError && error.code === ErrorCode.Unavailable) return make();
      throw error;
    }
  }

  private async leaderSteps(ca: CertificateAuthority): Promise<void> {
    const now = this.clock();
    const issuing = ca.trustAnchors().find((a) => a.issuing);
    if (issuing === undefined) return;
    const pending = ca.trustAnchors().find((a) => a.pending);
    if (pending === undefined && issuing.notAfter.getTime() - now <= this.rotateBefore * 1000) {
      const next = await ca.prepareRootRotation();
      this.log.info('webhook root rotation prepared', {
        expiring: issuing.fingerprint,
        next: next.fingerprint,
      });
    }
    // Every check, not only on change: `helm upgrade` resets caBundle to the chart's value.
    await this.patch(ca);
    const prepared = ca.trustAnchors().find((a) => a.pending);
    // The new root issues only once the API server has been told to trust it, and after the
    // overlap (its notBefore is backdated by the CA; that only makes the overlap shorter by it).
    if (
      prepared !== undefined &&
      this.patched &&
      now >= prepared.notBefore.getTime() + ca.backdateSeconds * 1000 + this.overlap * 1000
    ) {
      await ca.activatePendingRoot();
      this.log.info('webhook root rotation: issuing from the new root', {
        fingerprint: prepared.fingerprint,
      });
    }
    const current = ca.trustAnchors().find((a) => a.issuing);
    if (current === undefined) return;
    // Old roots go once every replica has moved to the new one (they re-issue on the next
    // check after the switch) and nothing they served can still be in use, or when expired.
    const retireAt =
      current.notBefore.getTime() +
      ca.backdateSeconds * 1000 +
      (this.overlap + this.servingTtl) * 1000 +
      2 * this.checkIntervalMs;
    for (const anchor of ca.trustAnchors()) {
      if (anchor.issuing || anchor.pending) continue;
      if (now >= retireAt || anchor.notAfter.getTime() <= now) {
        await ca.removeTrustAnchor(anchor.fingerprint, { force: true });
        this.log.info('webhook root retired', { fingerprint: anchor.fingerprint });
      }
    }
    if (ca.trustBundlePem() !== this.patchedBundle) await this.patch(ca);
  }

  private async patch(ca: CertificateAuthority): Promise<void> {
    if (this.options.patcher === undefined) return;
    const bundle = ca.trustBundlePem();
    this.patched = await this.options.patcher.ensure(bundle);
    this.patchedBundle = this.patched ? bundle : '';
  }

  private async ensureServing(ca: CertificateAuthority): Promise<void> {
    const now = this.clock();
    const issuing = ca.trustAnchors().find((a) => a.issuing);
    if (issuing === undefined) throw new ErpguardError(ErrorCode.Internal, 'CA has no issuer');
    const served = this.served;
    const due =
      served === undefined ||
      served.issuingFingerprint !== issuing.fingerprint ||
      now >=
        served.certificate.notBefore.getTime() +
          ((served.certificate.notAfter.getTime() - served.certificate.notBefore.getTime()) * 2) /
            3;
    const bundle = ca.trustBundlePem();
    if (!due && bundle === this.writtenBundle) return;
    await mkdir(this.options.certDir, { recursive: true, mode: 0o700 });
    if (due) {
      const certificate = ca.issueServingCertificate({
        dnsNames: this.options.dnsNames,
        ...(this.options.ipAddresses !== undefined
          ? { ipAddresses: this.options.ipAddresses }
          : {}),
        ttlSeconds: this.servingTtl,
      });
      // Key first: the reloader checks the pair, so a new key with the old certificate is
      // rejected and the old pair keeps serving until the certificate follows.
      await atomicWrite(this.keyFile, certificate.keyPem, 0o600);
      await atomicWrite(this.certFile, certificate.certificateChainPem, 0o644);
      this.served = { certificate, issuingFingerprint: issuing.fingerprint };
      this.log.info('webhook serving certificate issued', {
        notAfter: certificate.notAfter.toISOString(),
        root: issuing.fingerprint,
      });
    }
    await atomicWrite(this.bundleFile, bundle, 0o644);
    this.writtenBundle = bundle;
    if (due) await this.options.onServingChanged?.();
  }
}

async function atomicWrite(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

/**
 * Writes `caBundle` into every webhook of the named Mutating/ValidatingWebhookConfigurations
 * (read, change, replace with the read resourceVersion; a conflict is retried next time).
 */
export class KubeCaBundlePatcher implements CaBundlePatcher {
  private readonly api: AdmissionregistrationV1Api;
  private readonly log: Logger;

  constructor(
    private readonly clients: KubeClients,
    private readonly names: { mutating?: string; validating?: string },
    logger?: Logger,
  ) {
    this.api = clients.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    this.log = (logger ?? silentLogger()).child({ part: 'cabundle' });
  }

  async ensure(bundlePem: string): Promise<boolean> {
    const caBundle = Buffer.from(bundlePem, 'utf8').toString('base64');
    const results = await Promise.all([
      this.names.mutating === undefined ? true : this.ensureMutating(this.names.mutating, caBundle),
      this.names.validating === undefined
        ? true
        : this.ensureValidating(this.names.validating, caBundle),
    ]);
    return results.every(Boolean);
  }

  private async ensureMutating(name: string, caBundle: string): Promise<boolean> {
    const opts = requestOptions(this.clients);
    let config: V1MutatingWebhookConfiguration;
    try {
      config = await this.api.readMutatingWebhookConfiguration({ name }, opts);
    } catch (error) {
      return this.missing('MutatingWebhookConfiguration', name, error);
    }
    if (!setBundle(config.webhooks, caBundle)) return true;
    try {
      await this.api.replaceMutatingWebhookConfiguration({ name, body: config }, opts);
    } catch (error) {
      return this.failed('MutatingWebhookConfiguration', name, error);
    }
    this.log.info('caBundle patched', { kind: 'MutatingWebhookConfiguration', name });
    return true;
  }

  private async ensureValidating(name: string, caBundle: string): Promise<boolean> {
    const opts = requestOptions(this.clients);
    let config: V1ValidatingWebhookConfiguration;
    try {
      config = await this.api.readValidatingWebhookConfiguration({ name }, opts);
    } catch (error) {
      return this.missing('ValidatingWebhookConfiguration', name, error);
    }
    if (!setBundle(config.webhooks, caBundle)) return true;
    try {
      await this.api.replaceValidatingWebhookConfiguration({ name, body: config }, opts);
    } catch (error) {
      return this.failed('ValidatingWebhookConfiguration', name, error);
    }
    this.log.info('caBundle patched', { kind: 'ValidatingWebhookConfiguration', name });
    return true;
  }

  private missing(kind: string, name: string, error: unknown): boolean {
    if (isNotFound(error)) {
      // Not installed (yet): nothing to patch, and the rotation must not assume it was.
      this.log.warn('webhook configuration not found; caBundle not patched', { kind, name });
      return false;
    }
    throw kubeError(`read ${kind} ${name}`, error);
  }

  private failed(kind: string, name: string, error: unknown): boolean {
    if (isConflict(error)) {
      this.log.info('webhook configuration changed meanwhile; patching again later', {
        kind,
        name,
      });
      return false;
    }
    throw kubeError(`update ${kind} ${name}`, error);
  }
}

/** Sets caBundle on every webhook; true when anything changed. */
function setBundle(
  webhooks: { clientConfig: { caBundle?: string } }[] | undefined,
  caBundle: string,
): boolean {
  let changed = false;
  for (const webhook of webhooks ?? []) {
    if (webhook.clientConfig.caBundle !== caBundle) {
      webhook.clientConfig.caBundle = caBundle;
      changed = true;
    }
  }
  return changed;
}
