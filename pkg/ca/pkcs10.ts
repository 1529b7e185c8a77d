/**
 * PKCS#10 certificate signing requests (RFC 2986): a strict parser that verifies the CSR's own
 * signature with Node's crypto (forge's CSR code handles RSA only), and a builder for workloads.
 * The parser reports what the CSR asks for; the CA decides what to do with it.
 */
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

import { ErrorCode } from '../errors/errors.js';
import {
  Asn1Class,
  Asn1Type,
  DerError,
  bitString,
  children,
  contextTag,
  expectSequence,
  fromDer,
  isTag,
  nul,
  octets,
  oid,
  primitiveBytes,
  readBitString,
  readOid,
  readString,
  seq,
  set,
  smallInt,
  toDer,
  utf8,
  type Asn1,
} from './der.js';
import { CaError, CaReason } from './errors.js';
import { OID, SIGNATURE_ALGORITHMS } from './oids.js';
import { decodePemBlocks, encodePem, type PemError } from './pem.js';

export const DEFAULT_MAX_CSR_BYTES = 8 * 1024;
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;
const ACCEPTED_CURVES: ReadonlySet<string> = new Set(['prime256v1', 'secp384r1']);

export type CsrKeyType = 'rsa' | 'ec';

export interface ParsedCsr {
  publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo, copied unchanged into the certificate. */
  spkiDer: Buffer;
  keyType: CsrKeyType;
  /** RSA modulus bits or EC curve name, for logs. */
  keyDescription: string;
  /** Names the CSR asks for in its subjectAltName extension request. */
  requested: {
    uris: string[];
    dnsNames: string[];
    ipAddresses: string[];
    emails: string[];
    other: number;
  };
  /** String values of the CSR subject (any attribute), so a SPIFFE ID hidden there is noticed. */
  subjectValues: string[];
  /** The CSR asks for basicConstraints CA:true. */
  requestsCa: boolean;
}

function reject(reason: CaReason, message: string, cause?: unknown): CaError {
  return new CaError(ErrorCode.InvalidCsr, reason, message, cause === undefined ? {} : { cause });
}

function decodeCsrPem(pem: string, maxBytes: number): Buffer {
  if (Buffer.byteLength(pem, 'utf8') > maxBytes) {
    throw reject(CaReason.CsrTooLarge, `CSR is larger than ${maxBytes} bytes`);
  }
  let blocks;
  try {
    blocks = decodePemBlocks(pem);
  } catch (error) {
    throw reject(CaReason.CsrMalformed, `CSR is not valid PEM: ${(error as PemError).message}`);
  }
  const [block] = blocks;
  if (blocks.length !== 1 || block === undefined) {
    throw reject(CaReason.CsrMalformed, 'CSR must be exactly one PEM block');
  }
  if (block.label !== 'CERTIFICATE REQUEST' && block.label !== 'NEW CERTIFICATE REQUEST') {
    throw reject(
      CaReason.CsrMalformed,
      `expected a CERTIFICATE REQUEST block, got "${block.label}"`,
    );
  }
  return block.der;
}

const JWK_CURVES: Readonly<Record<string, { crv: string; size: number }>> = {
  [OID.prime256v1]: { crv: 'P-256', size: 32 },
  [OID.secp384r1]: { crv: 'P-384', size: 48 },
};

function stripLeadingZeros(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i);
}

/**
 * Imports a SubjectPublicKeyInfo. OpenSSL 3's DER decoder costs ~0.5 ms per key, which would
 * dominate issuance, so RSA and uncompressed EC keys go through JWK import (the point is still
 * checked to lie on the curve); anything else takes the general DER path.
 */
function importSpki(spki: Asn1, spkiDer: Buffer): KeyObject {
  const [algNode, bitsNode] = expectSequence(spki, 'SubjectPublicKeyInfo');
  const algFields = expectSequence(algNode, 'SubjectPublicKeyInfo.algorithm');
  const algOid = readOid(algFields[0], 'key algorithm');
  const bits = readBitString(bitsNode, 'subjectPublicKey');
  if (algOid === OID.ecPublicKey && isTag(algFields[1], Asn1Class.UNIVERSAL, Asn1Type.OID)) {
    const curve = JWK_CURVES[readOid(algFields[1], 'namedCurve')];
    if (curve !== undefined && bits.length === 1 + 2 * curve.size && bits[0] === 0x04) {
      return createPublicKey({
        format: 'jwk',
        key: {
          kty: 'EC',
          crv: curve.crv,
          x: bits.subarray(1, 1 + curve.size).toString('base64url'),
          y: bits.subarray(1 + curve.size).toString('base64url'),
        },
      });
    }
  }
  if (
    algOid === OID.rsaEncryption &&
    algFields.length === 2 &&
    isTag(algFields[1], Asn1Class.UNIVERSAL, Asn1Type.NULL)
  ) {
    const [n, e] = expectSequence(fromDer(bits), 'RSAPublicKey');
    if (
      isTag(n, Asn1Class.UNIVERSAL, Asn1Type.INTEGER) &&
      isTag(e, Asn1Class.UNIVERSAL, Asn1Type.INTEGER)
    ) {
      return createPublicKey({
        format: 'jwk',
        key: {
          kty: 'RSA',
          n: stripLeadingZeros(primitiveBytes(n, 'modulus')).toString('base64url'),
          e: stripLeadingZeros(primitiveBytes(e, 'publicExponent')).toString('base64url'),
        },
      });
    }
  }
  return createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
}

function checkKey(publicKey: KeyObject): { keyType: CsrKeyType; description: string } {
  const details = publicKey.asymmetricKeyDetails ?? {};
  if (publicKey.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw reject(CaReason.CsrWeakKey, `RSA key has ${bits} bits; at least ${MIN_RSA_BITS}`);
    }
    if (bits > MAX_RSA_BITS) {
      throw reject(CaReason.CsrUnsupportedKey, `RSA key has ${bits} bits; at most ${MAX_RSA_BITS}`);
    }
    if (details.publicExponent !== 65537n) {
      throw reject(CaReason.CsrWeakKey, 'RSA public exponent must be 65537');
    }
    return { keyType: 'rsa', description: `rsa-${bits}` };
  }
  if (publicKey.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve ?? 'unknown';
    if (!ACCEPTED_CURVES.has(curve)) {
      throw reject(
        CaReason.CsrUnsupportedKey,
        `EC curve ${curve} not accepted; use P-256 or P-384`,
      );
    }
    return { keyType: 'ec', description: `ec-${curve}` };
  }
  throw reject(
    CaReason.CsrUnsupportedKey,
    `key type ${publicKey.asymmetricKeyType ?? 'unknown'} not accepted; use EC P-256 or RSA >= 2048`,
  );
}

function parseGeneralNames(extnValue: Buffer, out: ParsedCsr['requested']): void {
  for (const name of expectSequence(fromDer(extnValue), 'subjectAltName')) {
    if (name.tagClass !== Asn1Class.CONTEXT_SPECIFIC) {
      out.other++;
      continue;
    }
    switch (name.type as number) {
      case 6:
        out.uris.push(primitiveBytes(name, 'URI').toString('latin1'));
        break;
      case 2:
        out.dnsNames.push(primitiveBytes(name, 'dNSName').toString('latin1'));
        break;
      case 1:
        out.emails.push(primitiveBytes(name, 'rfc822Name').toString('latin1'));
        break;
      case 7:
        out.ipAddresses.push(primitiveBytes(name, 'iPAddress').toString('hex'));
        break;
      default:
        out.other++;
    }
  }
}

function parseBasicConstraintsCa(extnValue: Buffer): boolean {
  const [first] = expectSequence(fromDer(extnValue), 'basicConstraints');
  if (!isTag(first, Asn1Class.UNIVERSAL, Asn1Type.BOOLEAN)) return false;
  return primitiveBytes(first, 'cA')[0] !== 0;
}

function parseExtensions(extensions: Asn1, result: ParsedCsr): void {
  const seen = new Set<string>();
  for (const extension of expectSequence(extensions, 'extensionRequest')) {
    const fields = expectSequence(extension, 'extension');
    const id = readOid(fields[0], 'extnID');
    if (seen.has(id)) throw new DerError(`extension ${id} appears twice`);
    seen.add(id);
    const valueNode = fields[fields.length - 1];
    if (!isTag(valueNode, Asn1Class.UNIVERSAL, Asn1Type.OCTETSTRING)) {
      throw new DerError('extnValue: expected an OCTET STRING');
    }
    const value = primitiveBytes(valueNode, 'extnValue');
    if (id === OID.subjectAltName) parseGeneralNames(value, result.requested);
    else if (id === OID.basicConstraints) result.requestsCa = parseBasicConstraintsCa(value);
    // Other requested extensions are ignored: the CA never copies extensions from a CSR.
  }
}

function parseAttributes(attributes: Asn1 | undefined, result: ParsedCsr): void {
  if (attributes === undefined) return;
  if (!isTag(attributes, Asn1Class.CONTEXT_SPECIFIC, 0)) {
    throw new DerError('attributes: expected [0]');
  }
  for (const attribute of children(attributes, 'attributes')) {
    const [typeNode, valuesNode] = expectSequence(attribute, 'attribute');
    if (readOid(typeNode, 'attribute type') !== OID.extensionRequest) continue;
    const values = children(valuesNode, 'extensionRequest values');
    if (values.length !== 1 || values[0] === undefined) {
      throw new DerError('extensionRequest must have exactly one value');
    }
    parseExtensions(values[0], result);
  }
}

function subjectStrings(name: Asn1 | undefined): string[] {
  const out: string[] = [];
  for (const rdn of expectSequence(name, 'subject')) {
    for (const atv of children(rdn, 'subject RDN')) {
      const [, value] = expectSequence(atv, 'subject attribute');
      if (value !== undefined && typeof value.value === 'string')
        out.push(readString(value, 'value'));
    }
  }
  return out;
}

function checkAlgorithmParameters(fields: Asn1[]): void {
  const params = fields[1];
  if (
    fields.length > 2 ||
    (params !== undefined && !isTag(params, Asn1Class.UNIVERSAL, Asn1Type.NULL))
  ) {
    throw reject(
      CaReason.CsrUnsupportedSignatureAlgorithm,
      'signature algorithm parameters are not accepted',
    );
  }
}

/**
 * Parses and verifies a PEM CSR. Throws CaError(InvalidCsr) with a reason for anything that is
 * malformed, weak, unsupported or not signed by the key it carries.
 */
export function parseCsr(pem: string, options: { maxBytes?: number } = {}): ParsedCsr {
  const der = decodeCsrPem(pem, options.maxBytes ?? DEFAULT_MAX_CSR_BYTES);
  try {
    const [infoNode, algNode, sigNode] = expectSequence(fromDer(der), 'CertificationRequest');
    const info = expectSequence(infoNode, 'certificationRequestInfo');
    const [version, subject, spkiNode, attributes] = info;
    if (info.length > 4 || infoNode === undefined || spkiNode === undefined) {
      throw new DerError('certificationRequestInfo has the wrong number of fields');
    }
    if (!isTag(version, Asn1Class.UNIVERSAL, Asn1Type.INTEGER)) {
      throw new DerError('version: expected an INTEGER');
    }
    if (!primitiveBytes(version, 'version').equals(Buffer.from([0]))) {
      throw new DerError('version must be 0 (v1)');
    }

    const spkiDer = toDer(spkiNode);
    let publicKey: KeyObject;
    try {
      publicKey = importSpki(spkiNode, spkiDer);
    } catch (error) {
      throw reject(
        CaReason.CsrUnsupportedKey,
        'public key is malformed or of an unknown type',
        error,
      );
    }
    const { keyType, description } = checkKey(publicKey);

    const algFields = expectSequence(algNode, 'signatureAlgorithm');
    const algOid = readOid(algFields[0], 'signature algorithm');
    const algorithm = SIGNATURE_ALGORITHMS[algOid];
    if (algorithm === undefined) {
      throw reject(
        CaReason.CsrUnsupportedSignatureAlgorithm,
        `signature algorithm ${algOid} not accepted (SHA-2 with RSA PKCS#1 v1.5 or ECDSA only)`,
      );
    }
    if (algorithm.keyType !== keyType) {
      throw reject(
        CaReason.CsrUnsupportedSignatureAlgorithm,
        `signature algorithm ${algOid} does not match the ${keyType} key`,
      );
    }
    checkAlgorithmParameters(algFields);

    const signature = readBitString(sigNode, 'signature');
    let valid = false;
    try {
      valid = verify(algorithm.hash, toDer(infoNode), publicKey, signature);
    } catch {
      valid = false;
    }
    if (!valid) {
      throw reject(
        CaReason.CsrSignatureInvalid,
        'CSR signature does not verify with its public key',
      );
    }

    const result: ParsedCsr = {
      publicKey,
      spkiDer,
      keyType,
      keyDescription: description,
      requested: { uris: [], dnsNames: [], ipAddresses: [], emails: [], other: 0 },
      subjectValues: subjectStrings(subject),
      requestsCa: false,
    };
    parseAttributes(attributes, result);
    return result;
  } catch (error) {
    if (error instanceof CaError) throw error;
    if (error instanceof DerError) {
      throw reject(CaReason.CsrMalformed, `CSR is malformed: ${error.message}`, error);
    }
    throw reject(CaReason.CsrMalformed, 'CSR is malformed', error);
  }
}

// === builder ===

export interface CsrOptions {
  /** URI subjectAltNames to request. The CA only accepts the caller's own SPIFFE ID here. */
  uris?: readonly string[];
  /** DNS subjectAltNames to request (the CA refuses them; for tests and other CAs). */
  dnsNames?: readonly string[];
  commonName?: string;
}

export interface SignatureAlgorithm {
  oid: string;
  hash: string;
  rsa: boolean;
}

/** Signature algorithm and digest for a private key, as used for CSRs and certificates. */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'rsa') {
    return { oid: OID.sha256WithRSAEncryption, hash: 'sha256', rsa: true };
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { oid: OID.ecdsaWithSha256, hash: 'sha256', rsa: false };
    if (curve === 'secp384r1') return { oid: OID.ecdsaWithSha384, hash: 'sha384', rsa: false };
  }
  throw new Error(
    `unsupported key: ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim(),
  );
}

export function algorithmIdentifier(alg: SignatureAlgorithm): Asn1 {
  // RFC 4055: RSA PKCS#1 v1.5 carries NULL parameters; RFC 5758: ECDSA has none.
  return seq(alg.rsa ? [oid(alg.oid), nul()] : [oid(alg.oid)]);
}

/** Builds a PEM PKCS#10 CSR signed natively with `privateKey` (RSA or EC P-256/P-384). */
export function buildCsr(privateKey: KeyObject, options: CsrOptions = {}): string {
  const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const alg = signatureAlgorithmFor(privateKey);
  const subject = seq(
    options.commonName === undefined
      ? []
      : [set([seq([oid(OID.commonName), utf8(options.commonName)])])],
  );
  const names: Asn1[] = [
    ...(options.uris ?? []).map((uri) => contextTag(6, false, Buffer.from(uri, 'latin1'))),
    ...(options.dnsNames ?? []).map((dns) => contextTag(2, false, Buffer.from(dns, 'latin1'))),
  ];
  const attributes =
    names.length === 0
      ? []
      : [
          seq([
            oid(OID.extensionRequest),
            set([seq([seq([oid(OID.subjectAltName), octets(toDer(seq(names)))])])]),
          ]),
        ];
  const info = seq([smallInt(0), subject, fromDer(spkiDer), contextTag(0, true, attributes)]);
  const infoDer = toDer(info);
  const signature = sign(alg.hash, infoDer, privateKey);
  const csr = seq([info, algorithmIdentifier(alg), bitString(signature)]);
  return encodePem('CERTIFICATE REQUEST', toDer(csr));
}
