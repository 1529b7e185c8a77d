/**
 * The certificate authority: loads or creates its root, signs workload CSRs into short-lived
 * SPIFFE leaves, issues the identity server's own serving certificate, and rotates roots.
 *
 * Identity rule (DESIGN.md §4.3): the SPIFFE ID comes from the authenticated caller passed in by
 * the server, never from the CSR. The CSR contributes only its public key; if it asks for any
 * name other than the caller's own SPIFFE ID, it is refused.
 *
 * Time and randomness are injected (`clock`, `randomBytes`) so issuance is testable.
 */
import {
  X509Certificate,
  createHash,
  createPrivateKey,
  randomBytes as nodeRandomBytes,
  type KeyObject,
} from 'node:crypto';

import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { CaError, CaReason } from './errors.js';
import { generateKeys, generateKeysSync, privateKeyPem, type KeyType } from './keys.js';
import { OID } from './oids.js';
import { decodeCertificates, encodePem, joinPem } from './pem.js';
import {
  DEFAULT_MAX_CSR_BYTES,
  parseCsr,
  signatureAlgorithmFor,
  type ParsedCsr,
} from './pkcs10.js';
import { spiffeIdFor, type WorkloadName } from './spiffe.js';
import type { CaKeyStore, CaMaterial } from './store.js';
import {
  KeyUsage,
  authorityKeyIdentifier,
  basicConstraints,
  extKeyUsage,
  inspectCertificate,
  keyIdentifier,
  keyUsage,
  nameDer,
  signCertificate,
  subjectAltName,
  subjectKeyIdentifier,
  type Issuer,
} from './x509.js';

export const DEFAULTS = {
  trustDomain: 'cluster.local',
  backdateSeconds: 60,
  defaultTtlSeconds: 3600,
  minTtlSeconds: 300,
  maxTtlSeconds: 24 * 3600,
  rootTtlSeconds: 10 * 365 * 24 * 3600,
  rootKeyType: 'ec-p256' as KeyType,
  organization: 'erpguard',
} as const;
/** Hard ceiling on leaf lifetimes, whatever the configuration says. */
export const ABSOLUTE_MAX_TTL_SECONDS = 24 * 3600;

export interface CertificateAuthorityOptions {
  store: CaKeyStore;
  /** SPIFFE trust domain; default `cluster.local`. */
  trustDomain?: string;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
  /** Source of serial numbers; default crypto.randomBytes. */
  randomBytes?: (size: number) => Buffer;
  /** NotBefore is set this far in the past to absorb clock skew between nodes (default 60). */
  backdateSeconds?: number;
  /** Leaf lifetime when the request names none (default 3600). */
  defaultTtlSeconds?: number;
  /** Requests below this are raised to it (default 300). */
  minTtlSeconds?: number;
  /** Requests above this are lowered to it (default 86400, never above 86400). */
  maxTtlSeconds?: number;
  /** Roots created by this CA (first start, rotation). */
  root?: { keyType?: KeyType; ttlSeconds?: number; organization?: string };
  /** Largest CSR accepted, PEM bytes (default 8 KiB). */
  maxCsrBytes?: number;
  logger?: Logger;
}

export interface SignRequest {
  csrPem: string;
  /** The authenticated caller. */
  identity: WorkloadName;
  /** Requested lifetime; clamped to [minTtl, maxTtl]. */
  ttlSeconds?: number;
}

export interface IssuedCertificate {
  spiffeId: string;
  /** The leaf alone. */
  certificatePem: string;
  /** Leaf followed by intermediates: what a TLS endpoint presents. */
  certificateChainPem: string;
  /** All trusted roots. */
  trustBundlePem: string;
  notBefore: Date;
  notAfter: Date;
  serialHex: string;
  keyType: string;
}

export interface ServingCertificate {
  keyPem: string;
  certificateChainPem: string;
  trustBundlePem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface TrustAnchorInfo {
  /** `sha256:<hex>` of the DER certificate. */
  fingerprint: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** Anchors the certificate that currently issues leaves. */
  issuing: boolean;
  /** Prepared by a rotation; trusted but not issuing yet. */
  pending: boolean;
  /** Latest NotAfter of a leaf this process issued under this anchor, if any. */
  lastLeafNotAfter: Date | null;
}

export type CaChange = 'trustBundle' | 'issuer';

interface Anchor {
  der: Buffer;
  pem: string;
  x509: X509Certificate;
  fingerprint: string;
}

interface ActiveIssuer extends Issuer {
  x509: X509Certificate;
  chainDer: Buffer[];
  /** The issuer and intermediates that are not trust anchors, PEM (empty for a root issuer). */
  intermediatesPem: string;
  anchorFingerprint: string;
  privateKeyPem: string;
  notBeforeMs: number;
  notAfterMs: number;
}

export function fingerprintOf(der: Buffer): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

function invalidMaterial(message: string, cause?: unknown): CaError {
  return new CaError(
    ErrorCode.InvalidConfig,
    CaReason.CaMaterialInvalid,
    message,
    cause === undefined ? {} : { cause },
  );
}

function parseAnchors(bundlePem: string): Anchor[] {
  if (bundlePem.trim() === '') return [];
  let ders: Buffer[];
  try {
    ders = decodeCertificates(bundlePem);
  } catch (error) {
    throw invalidMaterial(`trust bundle: ${(error as Error).message}`, error);
  }
  const anchors: Anchor[] = [];
  for (const der of ders) {
    const fingerprint = fingerprintOf(der);
    if (anchors.some((a) => a.fingerprint === fingerprint)) continue;
    const x509 = new X509Certificate(der);
    if (!x509.ca) throw invalidMaterial(`trust bundle: ${x509.subject} is not a CA certificate`);
    anchors.push({ der, pem: encodePem('CERTIFICATE', der), x509, fingerprint });
  }
  return anchors;
}

/** Checks a CA certificate (issuer or intermediate) may sign certificates. */
function checkCaCertificate(der: Buffer, what: string): ReturnType<typeof inspectCertificate> {
  let fields;
  try {
    fields = inspectCertificate(der);
  } catch (error) {
    throw invalidMaterial(`${what}: not a parsable certificate`, error);
  }
  if (!fields.isCa) throw invalidMaterial(`${what}: basicConstraints CA is not true`);
  if (fields.keyUsageBits !== null && !fields.keyUsageBits.has(KeyUsage.keyCertSign)) {
    throw invalidMaterial(`${what}: keyUsage lacks keyCertSign`);
  }
  return fields;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  private readonly clock: () => number;
  private readonly random: (size: number) => Buffer;
  private readonly backdateMs: number;
  private readonly defaultTtl: number;
  private readonly minTtl: number;
  private readonly maxTtl: number;
  private readonly maxCsrBytes: number;
  private readonly rootOptions: Required<NonNullable<CertificateAuthorityOptions['root']>>;
  private readonly log: Logger;
  private readonly store: CaKeyStore;

  private issuer!: ActiveIssuer;
  private anchors: Anchor[] = [];
  private pending: { anchor: Anchor; keyPem: string } | null = null;
  private bundlePemCache = '';
  private readonly lastLeafNotAfter = new Map<string, number>();
  private readonly listeners = new Set<(change: CaChange) => void>();
  private mutation: Promise<unknown> = Promise.resolve();

  /** Use createCertificateAuthority(); the constructor does no I/O. */
  constructor(options: CertificateAuthorityOptions) {
    this.store = options.store;
    this.trustDomain = options.trustDomain ?? DEFAULTS.trustDomain;
    spiffeIdFor(this.trustDomain, { namespace: 'a', serviceAccount: 'a' }); // validates the domain
    this.clock = options.clock ?? Date.now;
    this.random = options.randomBytes ?? nodeRandomBytes;
    this.backdateMs = (options.backdateSeconds ?? DEFAULTS.backdateSeconds) * 1000;
    this.maxTtl = Math.min(
      options.maxTtlSeconds ?? DEFAULTS.maxTtlSeconds,
      ABSOLUTE_MAX_TTL_SECONDS,
    );
    this.minTtl = Math.min(options.minTtlSeconds ?? DEFAULTS.minTtlSeconds, this.maxTtl);
    this.defaultTtl = Math.min(
      Math.max(options.defaultTtlSeconds ?? DEFAULTS.defaultTtlSeconds, this.minTtl),
      this.maxTtl,
    );
    if (this.minTtl <= 0 || this.backdateMs < 0) {
      throw new ErpguardError(ErrorCode.InvalidConfig, 'TTLs must be positive, backdate >= 0');
    }
    this.maxCsrBytes = options.maxCsrBytes ?? DEFAULT_MAX_CSR_BYTES;
    this.rootOptions = {
      keyType: options.root?.keyType ?? DEFAULTS.rootKeyType,
      ttlSeconds: options.root?.ttlSeconds ?? DEFAULTS.rootTtlSeconds,
      organization: options.root?.organization ?? DEFAULTS.organization,
    };
    this.log = options.logger ?? silentLogger();
  }

  /** Loads the stored material, or creates and saves a root on first start. */
  async init(): Promise<void> {
    let material = await this.store.load();
    if (material === null) {
      const root = await this.generateRoot();
      material = {
        issuerChainPem: root.certificatePem,
        issuerKeyPem: root.keyPem,
        trustBundlePem: root.certificatePem,
      };
      await this.store.save(material);
      this.log.info('created root certificate', {
        store: this.store.description,
        fingerprint: fingerprintOf(decodeCertificates(root.certificatePem)[0] ?? Buffer.alloc(0)),
      });
    }
    this.applyMaterial(material);
    this.log.info('certificate authority ready', {
      store: this.store.description,
      trustDomain: this.trustDomain,
      issuer: this.issuer.x509.subject,
      issuerNotAfter: new Date(this.issuer.notAfterMs).toISOString(),
      anchors: this.anchors.length,
    });
  }

  // === issuing ===

  /** Maximum leaf lifetime (the wait before an old root may be removed). */
  get maxTtlSeconds(): number {
    return this.maxTtl;
  }
  get backdateSeconds(): number {
    return this.backdateMs / 1000;
  }

  clampTtl(requested: number | undefined): number {
    if (requested === undefined || !Number.isFinite(requested) || requested <= 0) {
      return this.defaultTtl;
    }
    return Math.min(Math.max(Math.floor(requested), this.minTtl), this.maxTtl);
  }

  /**
   * Signs a workload CSR for the authenticated caller. Synchronous: parsing, verification and
   * signing are CPU-only. Throws CaError(InvalidCsr, reason) for a CSR that cannot be honoured.
   */
  sign(request: SignRequest): IssuedCertificate {
    const now = this.clock();
    const issuer = this.currentIssuer(now);
    const spiffeId = spiffeIdFor(this.trustDomain, request.identity);
    const csr = parseCsr(request.csrPem, { maxBytes: this.maxCsrBytes });
    checkRequestedIdentity(csr, spiffeId);

    const { notBefore, notAfter } = this.validity(now, this.clampTtl(request.ttlSeconds), issuer);
    const serial = this.serial();
    const der = signCertificate(
      {
        serial,
        notBefore,
        notAfter,
        subjectDer: this.leafSubjectDer,
        spkiDer: csr.spkiDer,
        extensions: [
          basicConstraints(false),
          keyUsage(
            csr.keyType === 'rsa'
              ? [KeyUsage.digitalSignature, KeyUsage.keyEncipherment]
              : [KeyUsage.digitalSignature],
          ),
          extKeyUsage([OID.serverAuth, OID.clientAuth]),
          subjectKeyIdentifier(keyIdentifier(csr.spkiDer)),
          authorityKeyIdentifier(issuer.keyId),
          subjectAltName({ uris: [spiffeId] }, false),
        ],
      },
      issuer,
    );
    this.noteLeaf(issuer.anchorFingerprint, notAfter);
    const certificatePem = encodePem('CERTIFICATE', der);
    return {
      spiffeId,
      certificatePem,
      certificateChainPem: certificatePem + issuer.intermediatesPem,
      trustBundlePem: this.bundlePemCache,
      notBefore,
      notAfter,
      serialHex: serial.toString('hex'),
      keyType: csr.keyDescription,
    };
  }

  /**
   * A serving certificate for the identity server itself: fresh EC P-256 key, the given DNS names
   * and IP addresses, and optionally a SPIFFE ID so clients may pin the server's identity.
   */
  issueServingCertificate(request: {
    dnsNames?: readonly string[];
    ipAddresses?: readonly string[];
    identity?: WorkloadName;
    ttlSeconds?: number;
  }): ServingCertificate {
    const now = this.clock();
    const issuer = this.currentIssuer(now);
    const keys = generateKeysSync('ec-p256');
    const spkiDer = keys.publicKey.export({ type: 'spki', format: 'der' });
    const { notBefore, notAfter } = this.validity(now, this.clampTtl(request.ttlSeconds), issuer);
    const uris =
      request.identity === undefined ? [] : [spiffeIdFor(this.trustDomain, request.identity)];
    const names = {
      uris,
      dnsNames: request.dnsNames ?? [],
      ipAddresses: request.ipAddresses ?? [],
    };
    if (names.uris.length + names.dnsNames.length + names.ipAddresses.length === 0) {
      throw new ErpguardError(ErrorCode.InvalidConfig, 'a serving certificate needs a name');
    }
    const der = signCertificate(
      {
        serial: this.serial(),
        notBefore,
        notAfter,
        subjectDer: this.leafSubjectDer,
        spkiDer,
        extensions: [
          basicConstraints(false),
          keyUsage([KeyUsage.digitalSignature]),
          extKeyUsage([OID.serverAuth, OID.clientAuth]),
          subjectKeyIdentifier(keyIdentifier(spkiDer)),
          authorityKeyIdentifier(issuer.keyId),
          subjectAltName(names, false),
        ],
      },
      issuer,
    );
    this.noteLeaf(issuer.anchorFingerprint, notAfter);
    return {
      keyPem: privateKeyPem(keys.privateKey),
      certificateChainPem: encodePem('CERTIFICATE', der) + issuer.intermediatesPem,
      trustBundlePem: this.bundlePemCache,
      notBefore,
      notAfter,
    };
  }

  /** PEM of every trusted root, the issuing one first. */
  trustBundlePem(): string {
    return this.bundlePemCache;
  }

  trustAnchors(): TrustAnchorInfo[] {
    return this.anchors.map((anchor) => {
      const last = this.lastLeafNotAfter.get(anchor.fingerprint);
      return {
        fingerprint: anchor.fingerprint,
        subject: anchor.x509.subject,
        notBefore: new Date(anchor.x509.validFrom),
        notAfter: new Date(anchor.x509.validTo),
        issuing: anchor.fingerprint === this.issuer.anchorFingerprint,
        pending: this.pending?.anchor.fingerprint === anchor.fingerprint,
        lastLeafNotAfter: last === undefined ? null : new Date(last),
      };
    });
  }

  issuerNotAfter(): Date {
    return new Date(this.issuer.notAfterMs);
  }

  /** Called with 'trustBundle' when roots are added or removed, 'issuer' when issuing switches. */
  onChange(listener: (change: CaChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // === rotation (docs/identity.md, "Root rotation") ===

  /**
   * Step 1: create the next root and add it to the trust bundle without issuing from it.
   * Idempotent: a rotation already prepared is returned as is.
   */
  prepareRootRotation(): Promise<TrustAnchorInfo> {
    return this.mutate(async () => {
      if (this.pending === null) {
        const root = await this.generateRoot();
        const material = this.currentMaterial();
        material.trustBundlePem = joinPem([this.bundlePemCache, root.certificatePem]);
        material.pending = { certificatePem: root.certificatePem, keyPem: root.keyPem };
        await this.commit(material, 'trustBundle');
        this.log.info('root rotation prepared: new root trusted, not issuing yet', {
          fingerprint: this.pendingFingerprint(),
        });
      }
      const fingerprint = this.pendingFingerprint();
      return this.trustAnchors().find((a) => a.fingerprint === fingerprint) as TrustAnchorInfo;
    });
  }

  /** Step 2: issue from the prepared root. The previous root stays trusted. */
  activatePendingRoot(): Promise<void> {
    return this.mutate(async () => {
      if (this.pending === null) {
        throw new ErpguardError(ErrorCode.InvalidArgument, 'no root rotation is prepared');
      }
      const material = this.currentMaterial();
      material.issuerChainPem = this.pending.anchor.pem;
      material.issuerKeyPem = this.pending.keyPem;
      delete material.pending;
      const previous = this.issuer.anchorFingerprint;
      await this.commit(material, 'issuer');
      this.log.info('root rotation activated: issuing from the new root', {
        fingerprint: this.issuer.anchorFingerprint,
        previous,
        removableAfter: this.removableAfter(previous).toISOString(),
      });
    });
  }

  /** Abandons a prepared rotation: the pending root leaves the bundle (it anchors nothing). */
  cancelRootRotation(): Promise<void> {
    return this.mutate(async () => {
      const pending = this.pending;
      if (pending === null) return;
      const material = this.currentMaterial();
      material.trustBundlePem = joinPem(
        this.anchors.filter((a) => a.fingerprint !== pending.anchor.fingerprint).map((a) => a.pem),
      );
      delete material.pending;
      await this.commit(material, 'trustBundle');
      this.log.info('root rotation cancelled', { fingerprint: pending.anchor.fingerprint });
    });
  }

  /**
   * Step 3: stop trusting a root. Refused while it anchors the issuer or a pending rotation,
   * and, unless `force`, while leaves this process issued under it may still be valid.
   */
  removeTrustAnchor(fingerprint: string, options: { force?: boolean } = {}): Promise<void> {
    return this.mutate(async () => {
      const anchor = this.anchors.find((a) => a.fingerprint === fingerprint);
      if (anchor === undefined) {
        throw new ErpguardError(ErrorCode.InvalidArgument, `no trust anchor ${fingerprint}`);
      }
      if (
        fingerprint === this.issuer.anchorFingerprint ||
        fingerprint === this.pending?.anchor.fingerprint
      ) {
        throw new CaError(
          ErrorCode.PermissionDenied,
          CaReason.TrustAnchorInUse,
          'the trust anchor anchors the issuing or pending certificate',
        );
      }
      const safeAt = this.removableAfter(fingerprint);
      if (options.force !== true && safeAt.getTime() > this.clock()) {
        throw new CaError(
          ErrorCode.PermissionDenied,
          CaReason.TrustAnchorInUse,
          `leaves issued under this root stay valid until ${safeAt.toISOString()}`,
        );
      }
      const material = this.currentMaterial();
      material.trustBundlePem = joinPem(
        this.anchors.filter((a) => a.fingerprint !== fingerprint).map((a) => a.pem),
      );
      await this.commit(material, 'trustBundle');
      this.lastLeafNotAfter.delete(fingerprint);
      this.log.info('trust anchor removed', { fingerprint, forced: options.force === true });
    });
  }

  /** Trust an externally managed root (another CA during a migration, a federated domain). */
  addTrustAnchor(certificatePem: string): Promise<TrustAnchorInfo> {
    return this.mutate(async () => {
      const [added] = parseAnchors(certificatePem);
      if (added === undefined) throw invalidMaterial('no certificate given');
      if (!this.anchors.some((a) => a.fingerprint === added.fingerprint)) {
        const material = this.currentMaterial();
        material.trustBundlePem = joinPem([this.bundlePemCache, added.pem]);
        await this.commit(material, 'trustBundle');
      }
      return this.trustAnchors().find(
        (a) => a.fingerprint === added.fingerprint,
      ) as TrustAnchorInfo;
    });
  }

  /** Switch issuing to an externally provided CA certificate (e.g. an intermediate). */
  replaceIssuer(issuerChainPem: string, issuerKeyPem: string): Promise<void> {
    return this.mutate(async () => {
      const material = this.currentMaterial();
      material.issuerChainPem = issuerChainPem;
      material.issuerKeyPem = issuerKeyPem;
      await this.commit(material, 'issuer');
    });
  }

  /** When the given root may be removed: the last NotAfter of a leaf issued under it. */
  removableAfter(fingerprint: string): Date {
    return new Date(this.lastLeafNotAfter.get(fingerprint) ?? 0);
  }

  // === internals ===

  private pendingFingerprint(): string | undefined {
    return this.pending?.anchor.fingerprint;
  }

  private readonly leafSubjectDer = nameDer([
    { oid: OID.organizationName, value: DEFAULTS.organization },
  ]);

  private mutate<T>(work: () => Promise<T>): Promise<T> {
    const run = this.mutation.then(work, work);
    this.mutation = run.catch(() => undefined);
    return run;
  }

  /** Validates, persists, then swaps the in-memory state: a failed save changes nothing. */
  private async commit(material: CaMaterial, change: CaChange): Promise<void> {
    const previous = this.currentMaterial();
    this.applyMaterial(material); // throws on invalid material before anything is saved
    try {
      await this.store.save(material);
    } catch (error) {
      this.applyMaterial(previous);
      throw new ErpguardError(
        ErrorCode.Unavailable,
        `cannot save CA material to ${this.store.description}`,
        {
          cause: error,
        },
      );
    }
    const changes: CaChange[] = change === 'issuer' ? ['issuer', 'trustBundle'] : ['trustBundle'];
    for (const c of changes) {
      for (const listener of this.listeners) {
        try {
          listener(c);
        } catch (error) {
          this.log.error('CA change listener failed', { err: error });
        }
      }
    }
  }

  private currentMaterial(): CaMaterial {
    const material: CaMaterial = {
      issuerChainPem: this.issuer.chainDer.map((der) => encodePem('CERTIFICATE', der)).join(''),
      issuerKeyPem: this.issuer.privateKeyPem,
      trustBundlePem: this.bundlePemCache,
    };
    if (this.pending !== null) {
      material.pending = { certificatePem: this.pending.anchor.pem, keyPem: this.pending.keyPem };
    }
    return material;
  }

  /** Parses and checks material; replaces the in-memory state only if all of it is usable. */
  private applyMaterial(material: CaMaterial): void {
    let chainDer: Buffer[];
    try {
      chainDer = decodeCertificates(material.issuerChainPem);
    } catch (error) {
      throw invalidMaterial(`issuer chain: ${(error as Error).message}`, error);
    }
    const [issuerDer] = chainDer;
    if (issuerDer === undefined) throw invalidMaterial('issuer chain is empty');
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(material.issuerKeyPem);
    } catch (error) {
      throw invalidMaterial('issuer key is not a readable private key', error);
    }
    const x509 = new X509Certificate(issuerDer);
    const fields = checkCaCertificate(issuerDer, 'issuer');
    if (!x509.checkPrivateKey(privateKey)) {
      throw invalidMaterial('issuer key does not match the issuer certificate');
    }
    const chain = chainDer.map((der) => new X509Certificate(der));
    chain.forEach((cert, i) => {
      if (i > 0) checkCaCertificate(chainDer[i] as Buffer, `intermediate ${i}`);
      const next = chain[i + 1];
      if (next !== undefined && !cert.verify(next.publicKey)) {
        throw invalidMaterial(
          `issuer chain: certificate ${i} is not signed by certificate ${i + 1}`,
        );
      }
    });

    let anchors = parseAnchors(material.trustBundlePem);
    const top = chain[chain.length - 1] as X509Certificate;
    const selfSigned = top.checkIssued(top) && top.verify(top.publicKey);
    if (anchors.length === 0 && selfSigned) anchors = parseAnchors(top.toString());
    const anchor = anchors.find(
      (a) =>
        a.x509.raw.equals(top.raw) || (top.checkIssued(a.x509) && top.verify(a.x509.publicKey)),
    );
    if (anchor === undefined) {
      throw invalidMaterial('the issuer chain does not lead to any root in the trust bundle');
    }
    // Put the issuing anchor first so clients that take only one root still get the right one.
    anchors = [anchor, ...anchors.filter((a) => a !== anchor)];

    let pending: { anchor: Anchor; keyPem: string } | null = null;
    if (material.pending !== undefined) {
      const [pendingAnchor] = parseAnchors(material.pending.certificatePem);
      if (pendingAnchor === undefined) throw invalidMaterial('pending root is empty');
      const key = createPrivateKey(material.pending.keyPem);
      if (!pendingAnchor.x509.checkPrivateKey(key)) {
        throw invalidMaterial('pending root key does not match its certificate');
      }
      if (!anchors.some((a) => a.fingerprint === pendingAnchor.fingerprint)) {
        throw invalidMaterial('pending root is not in the trust bundle');
      }
      pending = { anchor: pendingAnchor, keyPem: material.pending.keyPem };
    }

    let algorithm;
    try {
      algorithm = signatureAlgorithmFor(privateKey);
    } catch (error) {
      throw invalidMaterial('issuer key type is not supported (EC P-256/P-384 or RSA)', error);
    }
    this.issuer = {
      subjectDer: fields.subjectDer,
      algorithm,
      keyId: fields.subjectKeyId ?? keyIdentifier(fields.spkiDer),
      privateKey,
      x509,
      chainDer,
      // Everything from the issuer up that is not itself a trust anchor travels with each leaf.
      intermediatesPem: chainDer
        .filter((der) => !anchors.some((a) => a.der.equals(der)))
        .map((der) => encodePem('CERTIFICATE', der))
        .join(''),
      anchorFingerprint: anchor.fingerprint,
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      notBeforeMs: new Date(x509.validFrom).getTime(),
      notAfterMs: new Date(x509.validTo).getTime(),
    };
    this.anchors = anchors;
    this.pending = pending;
    this.bundlePemCache = joinPem(anchors.map((a) => a.pem));
  }

  private currentIssuer(now: number): ActiveIssuer {
    const issuer = this.issuer;
    if (now < issuer.notBeforeMs || now >= issuer.notAfterMs) {
      throw new CaError(
        ErrorCode.Unavailable,
        CaReason.IssuerNotValid,
        `the issuing certificate is not valid now (valid ${new Date(issuer.notBeforeMs).toISOString()} to ${new Date(issuer.notAfterMs).toISOString()})`,
      );
    }
    return issuer;
  }

  private validity(
    now: number,
    ttlSeconds: number,
    issuer: ActiveIssuer,
  ): { notBefore: Date; notAfter: Date } {
    // X.509 times have whole seconds: round here so what we report is what the certificate says.
    // A leaf never outlives its issuer: it would fail verification from that moment on.
    const second = (ms: number): number => Math.floor(ms / 1000) * 1000;
    const notAfter = Math.min(second(now + ttlSeconds * 1000), issuer.notAfterMs);
    const notBefore = Math.max(second(now - this.backdateMs), issuer.notBeforeMs);
    return { notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
  }

  /** 128 random bits as a positive INTEGER (RFC 5280 allows up to 20 octets). */
  private serial(): Buffer {
    const bytes = Buffer.from(this.random(16));
    if (bytes.length !== 16) throw new Error('randomBytes returned the wrong length');
    if (bytes.every((b) => b === 0)) bytes[15] = 1; // zero is not a valid serial
    return bytes;
  }

  private noteLeaf(anchorFingerprint: string, notAfter: Date): void {
    const previous = this.lastLeafNotAfter.get(anchorFingerprint) ?? 0;
    if (notAfter.getTime() > previous)
      this.lastLeafNotAfter.set(anchorFingerprint, notAfter.getTime());
  }

  private async generateRoot(): Promise<{ certificatePem: string; keyPem: string }> {
    const keys = await generateKeys(this.rootOptions.keyType);
    const spkiDer = keys.publicKey.export({ type: 'spki', format: 'der' });
    const keyId = keyIdentifier(spkiDer);
    const now = this.clock();
    const subjectDer = nameDer([
      { oid: OID.organizationName, value: this.rootOptions.organization },
      {
        oid: OID.commonName,
        value: `erpguard root ${new Date(now).toISOString().slice(0, 10)} ${this.random(4).toString('hex')}`,
      },
    ]);
    const der = signCertificate(
      {
        serial: this.serial(),
        notBefore: new Date(now - this.backdateMs),
        notAfter: new Date(now + this.rootOptions.ttlSeconds * 1000),
        subjectDer,
        spkiDer,
        extensions: [
          // pathLen 0: generated roots sign leaves only, never further CAs.
          basicConstraints(true, 0),
          keyUsage([KeyUsage.keyCertSign, KeyUsage.cRLSign]),
          subjectKeyIdentifier(keyId),
        ],
      },
      { subjectDer, keyId, privateKey: keys.privateKey },
    );
    return {
      certificatePem: encodePem('CERTIFICATE', der),
      keyPem: privateKeyPem(keys.privateKey),
    };
  }
}

/** The CSR may repeat the caller's own SPIFFE ID; any other name or a CA request is refused. */
function checkRequestedIdentity(csr: ParsedCsr, spiffeId: string): void {
  const { uris, dnsNames, ipAddresses, emails, other } = csr.requested;
  const foreign = uris.find((uri) => uri !== spiffeId);
  if (foreign !== undefined) {
    throw new CaError(
      ErrorCode.InvalidCsr,
      CaReason.CsrIdentityMismatch,
      `CSR requests URI ${foreign.slice(0, 200)}, but the caller is ${spiffeId}`,
    );
  }
  const hidden = csr.subjectValues.find((v) => v.includes('spiffe://') && v !== spiffeId);
  if (hidden !== undefined) {
    throw new CaError(
      ErrorCode.InvalidCsr,
      CaReason.CsrIdentityMismatch,
      `CSR subject names ${hidden.slice(0, 200)}, but the caller is ${spiffeId}`,
    );
  }
  if (dnsNames.length + ipAddresses.length + emails.length + other > 0) {
    throw new CaError(
      ErrorCode.InvalidCsr,
      CaReason.CsrUnsupportedSan,
      'CSR requests DNS, IP, e-mail or other names; only the caller SPIFFE ID is issued',
    );
  }
  if (csr.requestsCa) {
    throw new CaError(
      ErrorCode.InvalidCsr,
      CaReason.CsrRequestsCa,
      'CSR requests a CA certificate',
    );
  }
}

export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const ca = new CertificateAuthority(options);
  await ca.init();
  return ca;
}
