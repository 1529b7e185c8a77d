/**
 * A throw-away PKI for the sidecar's tests, benchmark and local experiments: ECDSA P-256 roots and
 * SPIFFE leaf certificates with any validity window and SAN list (including the malformed ones the
 * tests need: two URI SANs, another trust domain, expired). Keys come from Node's crypto; the
 * TBSCertificate is assembled with node-forge's ASN.1 module and signed natively. Not used by the
 * sidecar itself: production certificates come from the erpguard CA.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};

export interface TestCa {
  name: string;
  certPem: string;
  keyPem: string;
  key: KeyObject;
  keyId: Buffer;
}

export interface TestLeaf {
  certPem: string;
  keyPem: string;
  /** Leaf then issuer, PEM. */
  chain: string[];
  spiffeIds: readonly string[];
  notBefore: Date;
  notAfter: Date;
}

export interface LeafOptions {
  /** URI SANs (normally exactly one SPIFFE ID). */
  uris: readonly string[];
  dns?: readonly string[];
  /** Default: one minute ago. */
  notBefore?: Date;
  /** Default: one hour after notBefore. */
  notAfter?: Date;
}

const C = asn1.Class;
const T = asn1.Type;

function seq(items: Asn1[]): Asn1 {
  return asn1.create(C.UNIVERSAL, T.SEQUENCE, true, items);
}
function oid(id: string): Asn1 {
  return asn1.create(C.UNIVERSAL, T.OID, false, asn1.oidToDer(id).getBytes());
}
function bin(b: Buffer): string {
  return b.toString('binary');
}
function name(cn: string): Asn1 {
  const rdn = (type: string, value: string): Asn1 =>
    asn1.create(C.UNIVERSAL, T.SET, true, [
      seq([oid(type), asn1.create(C.UNIVERSAL, T.UTF8, false, forge.util.encodeUtf8(value))]),
    ]);
  return seq([rdn(OID.organization, 'erpguard-test'), rdn(OID.commonName, cn)]);
}
function time(d: Date): Asn1 {
  return d.getUTCFullYear() < 2050
    ? asn1.create(C.UNIVERSAL, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(C.UNIVERSAL, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}
function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const parts = [oid(id)];
  if (critical) parts.push(asn1.create(C.UNIVERSAL, T.BOOLEAN, false, '\xff'));
  parts.push(asn1.create(C.UNIVERSAL, T.OCTETSTRING, false, asn1.toDer(value).getBytes()));
  return seq(parts);
}
function bitString(bytes: Buffer): Asn1 {
  return asn1.create(C.UNIVERSAL, T.BITSTRING, false, '\x00' + bin(bytes));
}
function serial(): Asn1 {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return asn1.create(C.UNIVERSAL, T.INTEGER, false, bin(b));
}
function keyId(key: KeyObject): Buffer {
  return createHash('sha1')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest();
}

function certificate(opts: {
  subject: string;
  issuer: string;
  publicKey: KeyObject;
  signingKey: KeyObject;
  issuerKeyId: Buffer;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  uris?: readonly string[];
  dns?: readonly string[];
}): string {
  const spki = asn1.fromDer(bin(opts.publicKey.export({ type: 'spki', format: 'der' })));
  const exts: Asn1[] = [
    extension(
      OID.basicConstraints,
      true,
      seq(opts.ca ? [asn1.create(C.UNIVERSAL, T.BOOLEAN, false, '\xff')] : []),
    ),
    // keyUsage: digitalSignature (bit 0) for leaves; keyCertSign + cRLSign (bits 5, 6) for CAs.
    extension(
      OID.keyUsage,
      true,
      asn1.create(C.UNIVERSAL, T.BITSTRING, false, opts.ca ? '\x01\x06' : '\x07\x80'),
    ),
    extension(
      OID.subjectKeyIdentifier,
      false,
      asn1.create(C.UNIVERSAL, T.OCTETSTRING, false, bin(keyId(opts.publicKey))),
    ),
    extension(
      OID.authorityKeyIdentifier,
      false,
      seq([asn1.create(C.CONTEXT_SPECIFIC, 0, false, bin(opts.issuerKeyId))]),
    ),
  ];
  if (!opts.ca) {
    exts.push(extension(OID.extKeyUsage, false, seq([oid(OID.serverAuth), oid(OID.clientAuth)])));
    const names: Asn1[] = [
      ...(opts.uris ?? []).map((u) => asn1.create(C.CONTEXT_SPECIFIC, 6, false, u)),
      ...(opts.dns ?? []).map((d) => asn1.create(C.CONTEXT_SPECIFIC, 2, false, d)),
    ];
    if (names.length > 0) exts.push(extension(OID.subjectAltName, false, seq(names)));
  }
  const sigAlg = seq([oid(OID.ecdsaWithSha256)]);
  const tbs = seq([
    asn1.create(C.CONTEXT_SPECIFIC, 0, true, [asn1.create(C.UNIVERSAL, T.INTEGER, false, '\x02')]),
    serial(),
    sigAlg,
    name(opts.issuer),
    seq([time(opts.notBefore), time(opts.notAfter)]),
    name(opts.subject),
    spki,
    asn1.create(C.CONTEXT_SPECIFIC, 3, true, [seq(exts)]),
  ]);
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, opts.signingKey);
  const cert = seq([tbs, seq([oid(OID.ecdsaWithSha256)]), bitString(signature)]);
  const der = Buffer.from(asn1.toDer(cert).getBytes(), 'binary');
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

function ecKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/** A self-signed root, valid from a minute ago for ten years. */
export function createTestCa(cn = 'erpguard test root'): TestCa {
  const { privateKey, publicKey } = ecKeyPair();
  const id = keyId(publicKey);
  const notBefore = new Date(Date.now() - 60_000);
  const certPem = certificate({
    subject: cn,
    issuer: cn,
    publicKey,
    signingKey: privateKey,
    issuerKeyId: id,
    notBefore,
    notAfter: new Date(notBefore.getTime() + 10 * 365 * 86_400_000),
    ca: true,
  });
  return {
    name: cn,
    certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    key: privateKey,
    keyId: id,
  };
}

/** A leaf signed by `ca` with the given SANs and validity window. */
export function issueLeaf(ca: TestCa, opts: LeafOptions): TestLeaf {
  const { privateKey, publicKey } = ecKeyPair();
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + 3_600_000);
  const certPem = certificate({
    subject: opts.uris[0] ?? opts.dns?.[0] ?? 'leaf',
    issuer: ca.name,
    publicKey,
    signingKey: ca.key,
    issuerKeyId: ca.keyId,
    notBefore,
    notAfter,
    ca: false,
    uris: opts.uris,
    ...(opts.dns === undefined ? {} : { dns: opts.dns }),
  });
  return {
    certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    chain: [certPem],
    spiffeIds: opts.uris,
    notBefore,
    notAfter,
  };
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`. */
export function spiffeId(
  serviceAccount: string,
  namespace = 'erp',
  trustDomain = 'cluster.local',
): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
