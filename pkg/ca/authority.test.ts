import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from '@jest/globals';

import { ErrorCode } from '../errors/errors.js';
import type { CertificateAuthority } from './authority.js';
import { createCertificateAuthority, type CertificateAuthorityOptions } from './authority.js';
import { CaError, CaReason } from './errors.js';
import { generateKeysSync, type KeyType } from './keys.js';
import { decodeCertificates } from './pem.js';
import { buildCsr, type CsrOptions } from './pkcs10.js';
import { spiffeIdOfCertificate } from './spiffe.js';
import { FileCaKeyStore, MemoryCaKeyStore, type CaKeyStore, type CaMaterial } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'erpguard-ca-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;

function tmpFile(content: string): string {
  const path = join(dir, `f-${fileCounter++}.pem`);
  writeFileSync(path, content);
  return path;
}

/** `openssl verify` at a given time; returns openssl's output (throws on failure). */
function opensslVerify(bundlePem: string, chainPem: string, atMs: number): string {
  const certs = decodeCertificates(chainPem).map((der) => new X509Certificate(der).toString());
  const args = [
    'verify',
    '-attime',
    String(Math.floor(atMs / 1000)),
    '-CAfile',
    tmpFile(bundlePem),
  ];
  if (certs.length > 1) args.push('-untrusted', tmpFile(certs.slice(1).join('')));
  args.push(tmpFile(certs[0] ?? ''));
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: 'pipe' });
}
function verifies(bundlePem: string, chainPem: string, atMs: number): boolean {
  try {
    opensslVerify(bundlePem, chainPem, atMs);
    return true;
  } catch {
    return false;
  }
}
function opensslText(pem: string): string {
  return execFileSync('openssl', ['x509', '-in', tmpFile(pem), '-text', '-noout'], {
    encoding: 'utf8',
  });
}

const T0 = Date.parse('2027-03-01T12:00:00Z');
const finance = { namespace: 'erp', serviceAccount: 'finance' };
const FINANCE_ID = 'spiffe://cluster.local/ns/erp/sa/finance';

interface Fixture {
  ca: CertificateAuthority;
  clock: { now: number };
}
async function makeCa(options: Partial<CertificateAuthorityOptions> = {}): Promise<Fixture> {
  const clock = { now: T0 };
  const ca = await createCertificateAuthority({
    store: new MemoryCaKeyStore(),
    clock: () => clock.now,
    ...options,
  });
  return { ca, clock };
}
function csr(keyType: KeyType = 'ec-p256', options: CsrOptions = {}): string {
  return buildCsr(generateKeysSync(keyType).privateKey, options);
}
function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof CaError) return error.reason;
    throw error;
  }
  return 'accepted';
}

describe('issuing workload certificates', () => {
  it.each<[KeyType, string]>([
    ['ec-p256', 'Digital Signature'],
    ['rsa-2048', 'Digital Signature, Key Encipherment'],
  ])(
    '%s: verifies with openssl and carries exactly the expected extensions',
    async (keyType, usage) => {
      const { ca } = await makeCa();
      const issued = ca.sign({ csrPem: csr(keyType), identity: finance });
      expect(issued.spiffeId).toBe(FINANCE_ID);
      expect(opensslVerify(issued.trustBundlePem, issued.certificateChainPem, T0)).toContain('OK');

      const text = opensslText(issued.certificatePem);
      expect(text.match(/URI:/g)).toHaveLength(1);
      expect(text).toContain(`URI:${FINANCE_ID}`);
      expect(text).not.toContain('DNS:');
      expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
      expect(text).toMatch(new RegExp(`Key Usage: critical\\s+${usage}\\s`));
      expect(text).toMatch(
        /Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/,
      );
      expect(text).toContain('Authority Key Identifier');
      expect(spiffeIdOfCertificate(issued.certificatePem)).toBe(FINANCE_ID);
    },
  );

  it('back-dates NotBefore for clock skew and sets NotAfter to now + TTL', async () => {
    const { ca } = await makeCa();
    const issued = ca.sign({ csrPem: csr(), identity: finance });
    const x509 = new X509Certificate(issued.certificatePem);
    expect(new Date(x509.validFrom).getTime()).toBe(T0 - 60_000);
    expect(new Date(x509.validTo).getTime()).toBe(T0 + 3600_000);
    // A peer whose clock is 59 s behind accepts the certificate; 61 s behind it does not.
    expect(verifies(issued.trustBundlePem, issued.certificatePem, T0 - 59_000)).toBe(true);
    expect(verifies(issued.trustBundlePem, issued.certificatePem, T0 - 61_000)).toBe(false);
    expect(verifies(issued.trustBundlePem, issued.certificatePem, T0 + 3601_000)).toBe(false);
  });

  it('without back-dating a peer one second behind refuses the certificate (control)', async () => {
    const { ca } = await makeCa({ backdateSeconds: 0 });
    const issued = ca.sign({ csrPem: csr(), identity: finance });
    expect(verifies(issued.trustBundlePem, issued.certificatePem, T0)).toBe(true);
    expect(verifies(issued.trustBundlePem, issued.certificatePem, T0 - 2_000)).toBe(false);
  });

  it('uses the injected randomness for a positive 128-bit serial', async () => {
    const { ca } = await makeCa({ randomBytes: (n) => Buffer.alloc(n, 0xff) });
    const issued = ca.sign({ csrPem: csr(), identity: finance });
    expect(issued.serialHex).toBe('ff'.repeat(16));
    const text = opensslText(issued.certificatePem);
    expect(text).toMatch(/Serial Number:\s+(ff:){15}ff/);
    expect(text).not.toContain('Negative');
  });

  it.each<[string, number | undefined, Partial<CertificateAuthorityOptions>, number]>([
    ['default', undefined, {}, 3600],
    ['requested 2h', 7200, {}, 7200],
    ['below the minimum', 10, {}, 300],
    ['above the maximum', 10 * 24 * 3600, {}, 24 * 3600],
    ['configured maximum above 24h is capped', 48 * 3600, { maxTtlSeconds: 72 * 3600 }, 24 * 3600],
    ['configured maximum 2h', 5 * 3600, { maxTtlSeconds: 7200 }, 7200],
    ['zero means default', 0, {}, 3600],
    ['negative means default', -5, {}, 3600],
  ])('TTL: %s', async (_name, requested, options, expected) => {
    const { ca } = await makeCa(options);
    const issued = ca.sign({
      csrPem: csr(),
      identity: finance,
      ...(requested === undefined ? {} : { ttlSeconds: requested }),
    });
    expect(issued.notAfter.getTime() - T0).toBe(expected * 1000);
  });

  it('never issues a leaf that outlives its root', async () => {
    const { ca, clock } = await makeCa({ root: { ttlSeconds: 2 * 3600 } });
    clock.now = ca.issuerNotAfter().getTime() - 30 * 60_000;
    const issued = ca.sign({ csrPem: csr(), identity: finance, ttlSeconds: 3600 });
    expect(issued.notAfter.getTime()).toBe(ca.issuerNotAfter().getTime());
  });

  it('refuses to issue once the root has expired', async () => {
    const { ca, clock } = await makeCa({ root: { ttlSeconds: 3600 } });
    clock.now = T0 + 2 * 3600_000;
    let error: unknown;
    try {
      ca.sign({ csrPem: csr(), identity: finance });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).reason).toBe(CaReason.IssuerNotValid);
    expect((error as CaError).code).toBe(ErrorCode.Unavailable);
  });
});

describe('the identity comes from the caller, never from the CSR', () => {
  const cases: [string, () => string, string][] = [
    [
      'CSR asks for another workload',
      () => csr('ec-p256', { uris: ['spiffe://cluster.local/ns/erp/sa/payroll'] }),
      CaReason.CsrIdentityMismatch,
    ],
    [
      'CSR asks for another trust domain',
      () => csr('ec-p256', { uris: ['spiffe://evil.org/ns/erp/sa/finance'] }),
      CaReason.CsrIdentityMismatch,
    ],
    [
      'CSR asks for two URIs, one own',
      () =>
        csr('ec-p256', { uris: [FINANCE_ID, 'spiffe://cluster.local/ns/kube-system/sa/admin'] }),
      CaReason.CsrIdentityMismatch,
    ],
    [
      'CSR hides another SPIFFE ID in the subject',
      () => csr('ec-p256', { commonName: 'spiffe://cluster.local/ns/erp/sa/payroll' }),
      CaReason.CsrIdentityMismatch,
    ],
    [
      'CSR asks for a DNS name',
      () => csr('ec-p256', { dnsNames: ['finance.erp.svc'] }),
      CaReason.CsrUnsupportedSan,
    ],
    ['CSR repeats the caller identity', () => csr('ec-p256', { uris: [FINANCE_ID] }), 'accepted'],
    [
      'CSR with an ordinary subject',
      () => csr('ec-p256', { commonName: 'finance-7d9f' }),
      'accepted',
    ],
  ];
  it.each(cases)('%s', async (_name, make, expected) => {
    const { ca } = await makeCa();
    let issuedPem = '';
    const outcome = reasonOf(() => {
      issuedPem = ca.sign({ csrPem: make(), identity: finance }).certificatePem;
    });
    expect(outcome).toBe(expected);
    if (outcome === 'accepted') {
      expect(spiffeIdOfCertificate(issuedPem)).toBe(FINANCE_ID);
      expect(new X509Certificate(issuedPem).subject).toBe('O=erpguard');
    }
  });

  it('refuses a CSR that asks to be a CA', async () => {
    const { ca } = await makeCa();
    const path = join(dir, 'ca-req.csr');
    execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-nodes',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-keyout',
        join(dir, 'ca-req.key'),
        '-subj',
        '/O=x',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-out',
        path,
      ],
      { stdio: 'pipe' },
    );
    expect(reasonOf(() => ca.sign({ csrPem: readFileSync(path, 'utf8'), identity: finance }))).toBe(
      CaReason.CsrRequestsCa,
    );
  });
});

describe('serving certificate', () => {
  it('carries the DNS names, IP addresses and SPIFFE ID it was asked for', async () => {
    const { ca } = await makeCa();
    const serving = ca.issueServingCertificate({
      dnsNames: ['erpguard-controller.erpguard.svc', 'localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      identity: { namespace: 'erpguard', serviceAccount: 'erpguard-controller' },
    });
    const x509 = new X509Certificate(serving.certificateChainPem);
    expect(x509.subjectAltName).toBe(
      'DNS:erpguard-controller.erpguard.svc, DNS:localhost, URI:spiffe://cluster.local/ns/erpguard/sa/erpguard-controller, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(opensslVerify(serving.trustBundlePem, serving.certificateChainPem, T0)).toContain('OK');
  });
});

describe('persistence', () => {
  it('creates a root on first start and loads the same one afterwards', async () => {
    const storeDir = join(dir, 'store-1');
    const first = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    const [anchor] = first.trustAnchors();
    expect(statSync(join(storeDir, 'tls.key')).mode & 0o777).toBe(0o600);
    expect(lstatSync(join(storeDir, 'tls.crt')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(storeDir, 'tls.crt'))).toBe(join('..data', 'tls.crt'));

    const second = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    expect(second.trustAnchors().map((a) => a.fingerprint)).toEqual([anchor?.fingerprint]);
    const issued = second.sign({ csrPem: csr(), identity: finance });
    expect(verifies(first.trustBundlePem(), issued.certificateChainPem, Date.now())).toBe(true);
  });

  it('loads plain files written by an operator (self-signed root without ca.crt)', async () => {
    const storeDir = join(dir, 'store-plain');
    execFileSync('mkdir', ['-p', storeDir]);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-nodes',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-days',
        '30',
        '-subj',
        '/O=corp/CN=corp root',
        '-keyout',
        join(storeDir, 'tls.key'),
        '-out',
        join(storeDir, 'tls.crt'),
      ],
      { stdio: 'pipe' },
    );
    const ca = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    const issued = ca.sign({ csrPem: csr(), identity: finance });
    expect(
      verifies(
        readFileSync(join(storeDir, 'tls.crt'), 'utf8'),
        issued.certificateChainPem,
        Date.now(),
      ),
    ).toBe(true);
  });

  it.each<[string, (m: CaMaterial, other: CaMaterial) => CaMaterial]>([
    ['key of another CA', (m, other) => ({ ...m, issuerKeyPem: other.issuerKeyPem })],
    [
      'bundle without the issuing root',
      (m, other) => ({
        ...m,
        trustBundlePem: other.trustBundlePem,
        issuerChainPem: m.issuerChainPem,
      }),
    ],
    ['garbage certificate', (m) => ({ ...m, issuerChainPem: 'nonsense' })],
    [
      'garbage key',
      (m) => ({
        ...m,
        issuerKeyPem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
      }),
    ],
  ])('refuses stored material with %s', async (_name, corrupt) => {
    const a = new MemoryCaKeyStore();
    const b = new MemoryCaKeyStore();
    await createCertificateAuthority({ store: a });
    await createCertificateAuthority({ store: b });
    const [ma, mb] = [await a.load(), await b.load()];
    if (ma === null || mb === null) throw new Error('nothing stored');
    // Make the "other" bundle not self-evidently include the issuer: drop ca.crt fallback.
    const broken = new MemoryCaKeyStore(corrupt(ma, mb));
    await expect(createCertificateAuthority({ store: broken })).rejects.toMatchObject({
      code: ErrorCode.InvalidConfig,
      reason: CaReason.CaMaterialInvalid,
    });
  });

  it('keeps its state when the store cannot save', async () => {
    const store = new MemoryCaKeyStore();
    const ca = await createCertificateAuthority({ store });
    const failing: CaKeyStore = {
      description: 'failing',
      load: () => store.load(),
      save: () => Promise.reject(new Error('disk full')),
    };
    const ca2 = await createCertificateAuthority({ store: failing });
    await expect(ca2.prepareRootRotation()).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(ca2.trustAnchors()).toHaveLength(1);
    expect(ca.trustAnchors()).toHaveLength(1);
  });
});

describe('intermediate issuer', () => {
  it('issues under an intermediate and returns the chain', async () => {
    const d = join(dir, 'inter');
    execFileSync('mkdir', ['-p', d]);
    const run = (args: string[]): void => {
      execFileSync('openssl', args, { stdio: 'pipe', cwd: d });
    };
    run([
      'req',
      '-x509',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-days',
      '3650',
      '-subj',
      '/CN=corp root',
      '-keyout',
      'root.key',
      '-out',
      'root.crt',
    ]);
    run([
      'req',
      '-new',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-subj',
      '/CN=erpguard intermediate',
      '-keyout',
      'int.key',
      '-out',
      'int.csr',
    ]);
    writeFileSync(
      join(d, 'ext.cnf'),
      'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n',
    );
    run([
      'x509',
      '-req',
      '-in',
      'int.csr',
      '-CA',
      'root.crt',
      '-CAkey',
      'root.key',
      '-CAcreateserial',
      '-days',
      '365',
      '-extfile',
      'ext.cnf',
      '-out',
      'int.crt',
    ]);
    const read = (name: string): string => readFileSync(join(d, name), 'utf8');
    const store = new MemoryCaKeyStore({
      issuerChainPem: read('int.crt'),
      issuerKeyPem: read('int.key'),
      trustBundlePem: read('root.crt'),
    });
    const ca = await createCertificateAuthority({ store });
    const issued = ca.sign({ csrPem: csr(), identity: finance });
    expect(decodeCertificates(issued.certificateChainPem)).toHaveLength(2);
    expect(opensslVerify(read('root.crt'), issued.certificateChainPem, Date.now())).toContain('OK');
    expect(ca.trustBundlePem()).toBe(new X509Certificate(read('root.crt')).toString());
  });
});

describe('root rotation', () => {
  it('adds the new root first, then issues from it, then removes the old one after the longest leaf TTL', async () => {
    const { ca, clock } = await makeCa();
    const changes: string[] = [];
    ca.onChange((c) => changes.push(c));
    const [oldRoot] = ca.trustAnchors();
    if (oldRoot === undefined) throw new Error('no root');
    const oldLeaf = ca.sign({ csrPem: csr(), identity: finance, ttlSeconds: 24 * 3600 });

    // Step 1: both roots trusted, still issuing from the old one.
    const next = await ca.prepareRootRotation();
    expect(await ca.prepareRootRotation()).toEqual(next); // idempotent
    expect(ca.trustAnchors().map((a) => [a.issuing, a.pending])).toEqual([
      [true, false],
      [false, true],
    ]);
    const step1Leaf = ca.sign({ csrPem: csr(), identity: finance });
    expect(
      new X509Certificate(step1Leaf.certificatePem).checkIssued(
        new X509Certificate(ca.trustBundlePem()),
      ),
    ).toBe(true);
    expect(verifies(ca.trustBundlePem(), step1Leaf.certificatePem, clock.now)).toBe(true);

    // Step 2: issue from the new root; leaves of both roots verify against the bundle.
    await ca.activatePendingRoot();
    const newLeaf = ca.sign({ csrPem: csr(), identity: finance });
    expect(ca.trustAnchors().find((a) => a.issuing)?.fingerprint).toBe(next.fingerprint);
    expect(verifies(ca.trustBundlePem(), newLeaf.certificateChainPem, clock.now)).toBe(true);
    expect(verifies(ca.trustBundlePem(), oldLeaf.certificateChainPem, clock.now)).toBe(true);
    // The new root alone (first in the bundle now) does not vouch for the old leaf: removing
    // the old root too early would break its holders.
    const [newRootDer] = decodeCertificates(ca.trustBundlePem());
    const newRootOnly = new X509Certificate(newRootDer ?? Buffer.alloc(0)).toString();
    expect(verifies(newRootOnly, oldLeaf.certificatePem, clock.now)).toBe(false);

    // Step 3: refused while a leaf of the old root may be valid, and for the issuing root always.
    await expect(ca.removeTrustAnchor(oldRoot.fingerprint)).rejects.toMatchObject({
      reason: CaReason.TrustAnchorInUse,
    });
    await expect(ca.removeTrustAnchor(next.fingerprint, { force: true })).rejects.toMatchObject({
      reason: CaReason.TrustAnchorInUse,
    });
    expect(ca.removableAfter(oldRoot.fingerprint).getTime()).toBe(oldLeaf.notAfter.getTime());
    clock.now = oldLeaf.notAfter.getTime() + 1000;
    await ca.removeTrustAnchor(oldRoot.fingerprint);
    expect(ca.trustAnchors().map((a) => a.fingerprint)).toEqual([next.fingerprint]);
    expect(verifies(ca.trustBundlePem(), oldLeaf.certificatePem, clock.now - 2000)).toBe(false);
    expect(changes).toEqual(['trustBundle', 'issuer', 'trustBundle', 'trustBundle']);
  });

  it('can abandon a prepared rotation', async () => {
    const { ca } = await makeCa();
    const [root] = ca.trustAnchors();
    await ca.prepareRootRotation();
    expect(ca.trustAnchors()).toHaveLength(2);
    await ca.cancelRootRotation();
    expect(ca.trustAnchors().map((a) => a.fingerprint)).toEqual([root?.fingerprint]);
    await expect(ca.activatePendingRoot()).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });

  it('survives a restart in the middle of a rotation', async () => {
    const storeDir = join(dir, 'store-rotation');
    const ca = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    const pending = await ca.prepareRootRotation();
    const reloaded = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    expect(reloaded.trustAnchors().find((a) => a.pending)?.fingerprint).toBe(pending.fingerprint);
    await reloaded.activatePendingRoot();
    const again = await createCertificateAuthority({ store: new FileCaKeyStore(storeDir) });
    expect(again.trustAnchors().find((a) => a.issuing)?.fingerprint).toBe(pending.fingerprint);
    expect(again.trustAnchors()).toHaveLength(2);
  });
});
