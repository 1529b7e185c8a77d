/**
 * X.509 certificate construction: the TBSCertificate is assembled with forge's ASN.1 module and
 * signed with Node's native crypto (forge's pure-JS RSA is ~15x slower and has no ECDSA).
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

import {
  Asn1Class,
  Asn1Type,
  DerError,
  bitString,
  bool,
  children,
  contextTag,
  expectSequence,
  fromDer,
  isTag,
  octets,
  oid,
  primitiveBytes,
  readBitString,
  readOid,
  seq,
  set,
  smallInt,
  time,
  toDer,
  uint,
  utf8,
  type Asn1,
} from './der.js';
import { OID } from './oids.js';
import { algorithmIdentifier, signatureAlgorithmFor, type SignatureAlgorithm } from './pkcs10.js';

/** KeyUsage bits (RFC 5280 §4.2.1.3), numbered from the most significant bit. */
export const KeyUsage = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

export interface Issuer {
  /** DER Name of the issuing certificate's subject. */
  subjectDer: Buffer;
  /** Signature algorithm of the issuing key; computed from the key when absent. */
  algorithm?: SignatureAlgorithm;
  /** Key identifier of the issuing key (becomes the leaf's authorityKeyIdentifier). */
  keyId: Buffer;
  privateKey: KeyObject;
}

export interface CertificateTemplate {
  /** Unsigned big-endian serial number bytes. */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  subjectDer: Buffer;
  spkiDer: Buffer;
  extensions: Asn1[];
}

export function nameDer(attributes: readonly { oid: string; value: string }[]): Buffer {
  return toDer(seq(attributes.map((a) => set([seq([oid(a.oid), utf8(a.value)])]))));
}

function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  // DER forbids encoding the DEFAULT FALSE of `critical`.
  return seq(
    critical ? [oid(id), bool(true), octets(toDer(value))] : [oid(id), octets(toDer(value))],
  );
}

export function basicConstraints(ca: boolean, pathLength?: number): Asn1 {
  const fields: Asn1[] = [];
  if (ca) fields.push(bool(true));
  if (ca && pathLength !== undefined) fields.push(smallInt(pathLength));
  return extension(OID.basicConstraints, true, seq(fields));
}

export function keyUsage(bits: readonly number[]): Asn1 {
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) {
    const index = Math.floor(bit / 8);
    bytes[index] = (bytes[index] ?? 0) | (0x80 >> (bit % 8));
  }
  // DER named-bit lists drop trailing zero bits: the unused count is what follows the highest bit.
  const unused = 7 - (highest % 8);
  return extension(OID.keyUsage, true, bitString(bytes, unused));
}

export function extKeyUsage(purposes: readonly string[]): Asn1 {
  return extension(OID.extKeyUsage, false, seq(purposes.map((p) => oid(p))));
}

export function subjectKeyIdentifier(keyId: Buffer): Asn1 {
  return extension(OID.subjectKeyIdentifier, false, octets(keyId));
}

export function authorityKeyIdentifier(keyId: Buffer): Asn1 {
  return extension(OID.authorityKeyIdentifier, false, seq([contextTag(0, false, keyId)]));
}

export interface AltNames {
  uris?: readonly string[];
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

function ipBytes(address: string): Buffer {
  const family = isIP(address);
  if (family === 4) return Buffer.from(address.split('.').map((part) => Number(part)));
  if (family === 6) {
    const [head = '', tail = ''] = address.split('::');
    const parse = (part: string): number[] =>
      part === '' ? [] : part.split(':').map((group) => parseInt(group, 16));
    const high = parse(head);
    const low = address.includes('::') ? parse(tail) : [];
    const groups = [...high, ...new Array<number>(8 - high.length - low.length).fill(0), ...low];
    const out = Buffer.alloc(16);
    groups.forEach((group, i) => out.writeUInt16BE(group, i * 2));
    return out;
  }
  throw new Error(`not an IP address: ${address}`);
}

export function subjectAltName(names: AltNames, critical: boolean): Asn1 {
  const entries: Asn1[] = [
    ...(names.dnsNames ?? []).map((n) => contextTag(2, false, Buffer.from(n, 'latin1'))),
    ...(names.uris ?? []).map((n) => contextTag(6, false, Buffer.from(n, 'latin1'))),
    ...(names.ipAddresses ?? []).map((n) => contextTag(7, false, ipBytes(n))),
  ];
  return extension(OID.subjectAltName, critical, seq(entries));
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents. */
export function keyIdentifier(spkiDer: Buffer): Buffer {
  const [, keyBits] = expectSequence(fromDer(spkiDer), 'SubjectPublicKeyInfo');
  return createHash('sha1').update(readBitString(keyBits, 'subjectPublicKey')).digest();
}

/** Builds the TBSCertificate and signs it with the issuer's key (native crypto). Returns DER. */
export function signCertificate(template: CertificateTemplate, issuer: Issuer): Buffer {
  const alg = issuer.algorithm ?? signatureAlgorithmFor(issuer.privateKey);
  const algId = algorithmIdentifier(alg);
  const tbs = seq([
    contextTag(0, true, [smallInt(2)]),
    uint(template.serial),
    algId,
    fromDer(issuer.subjectDer),
    seq([time(template.notBefore), time(template.notAfter)]),
    fromDer(template.subjectDer),
    fromDer(template.spkiDer),
    contextTag(3, true, [seq(template.extensions)]),
  ]);
  const tbsDer = toDer(tbs);
  const signature = sign(alg.hash, tbsDer, issuer.privateKey);
  return toDer(seq([tbs, algId, bitString(signature)]));
}

/** Fields of a certificate the CA needs beyond what node:crypto's X509Certificate exposes. */
export interface CertificateFields {
  subjectDer: Buffer;
  issuerDer: Buffer;
  spkiDer: Buffer;
  subjectKeyId: Buffer | null;
  authorityKeyId: Buffer | null;
  isCa: boolean;
  keyUsageBits: Set<number> | null;
}

export function inspectCertificate(der: Buffer): CertificateFields {
  const [tbsNode] = expectSequence(fromDer(der), 'Certificate');
  const tbs = expectSequence(tbsNode, 'TBSCertificate');
  const offset = isTag(tbs[0], Asn1Class.CONTEXT_SPECIFIC, 0) ? 1 : 0;
  const issuer = tbs[offset + 2];
  const subject = tbs[offset + 4];
  const spki = tbs[offset + 5];
  if (issuer === undefined || subject === undefined || spki === undefined) {
    throw new DerError('TBSCertificate is too short');
  }
  const result: CertificateFields = {
    subjectDer: toDer(subject),
    issuerDer: toDer(issuer),
    spkiDer: toDer(spki),
    subjectKeyId: null,
    authorityKeyId: null,
    isCa: false,
    keyUsageBits: null,
  };
  const extensionsNode = tbs.find((node) => isTag(node, Asn1Class.CONTEXT_SPECIFIC, 3));
  if (extensionsNode === undefined) return result;
  const [extensions] = children(extensionsNode, 'extensions');
  for (const ext of expectSequence(extensions, 'Extensions')) {
    const fields = expectSequence(ext, 'Extension');
    const id = readOid(fields[0], 'extnID');
    const value = fromDer(primitiveBytes(fields[fields.length - 1], 'extnValue'));
    if (id === OID.subjectKeyIdentifier) {
      result.subjectKeyId = primitiveBytes(value, 'subjectKeyIdentifier');
    } else if (id === OID.authorityKeyIdentifier) {
      const keyId = children(value, 'authorityKeyIdentifier').find((n) =>
        isTag(n, Asn1Class.CONTEXT_SPECIFIC, 0),
      );
      if (keyId !== undefined) result.authorityKeyId = primitiveBytes(keyId, 'keyIdentifier');
    } else if (id === OID.basicConstraints) {
      const [first] = expectSequence(value, 'basicConstraints');
      result.isCa =
        isTag(first, Asn1Class.UNIVERSAL, Asn1Type.BOOLEAN) && primitiveBytes(first, 'cA')[0] !== 0;
    } else if (id === OID.keyUsage) {
      const bytes = primitiveBytes(value, 'keyUsage').subarray(1);
      result.keyUsageBits = new Set<number>();
      bytes.forEach((byte, index) => {
        for (let bit = 0; bit < 8; bit++) {
          if (byte & (0x80 >> bit)) result.keyUsageBits?.add(index * 8 + bit);
        }
      });
    }
  }
  return result;
}
