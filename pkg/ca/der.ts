/**
 * Thin DER helpers over node-forge's ASN.1 module. forge works on binary strings; these helpers
 * keep Buffers at the edges so the rest of the CA speaks Node. Parsing is strict: every input is
 * re-encoded and must give back the exact bytes, so a signature is always checked over the bytes
 * we interpret (no BER leniency, no trailing data).
 */
import forge from 'node-forge';

export type Asn1 = forge.asn1.Asn1;

const { Class, Type } = forge.asn1;

interface FromDerOptions {
  strict: boolean;
  parseAllBytes: boolean;
  decodeBitStrings: boolean;
}
// @types/node-forge only declares the boolean form; forge 1.x accepts an options object.
const fromDerWithOptions = forge.asn1.fromDer as unknown as (
  bytes: forge.util.ByteStringBuffer,
  options: FromDerOptions,
) => Asn1;

export class DerError extends Error {
  override name = 'DerError';
}

export function toDer(node: Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary');
}

/** Decodes DER; throws DerError on malformed input, trailing bytes or a non-canonical encoding. */
export function fromDer(der: Buffer): Asn1 {
  let node: Asn1;
  try {
    node = fromDerWithOptions(forge.util.createBuffer(der.toString('binary')), {
      strict: true,
      parseAllBytes: true,
      decodeBitStrings: false,
    });
  } catch (error) {
    throw new DerError(`malformed DER: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!toDer(node).equals(der)) throw new DerError('not canonical DER');
  return node;
}

// === builders ===

export function seq(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
}
export function set(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SET, true, items);
}
export function oid(dotted: string): Asn1 {
  return forge.asn1.create(
    Class.UNIVERSAL,
    Type.OID,
    false,
    forge.asn1.oidToDer(dotted).getBytes(),
  );
}
/** INTEGER from unsigned big-endian magnitude bytes; encoded minimally and positive. */
export function uint(magnitude: Buffer): Asn1 {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let body = magnitude.subarray(start);
  if (body.length === 0) body = Buffer.from([0]);
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return forge.asn1.create(Class.UNIVERSAL, Type.INTEGER, false, body.toString('binary'));
}
export function smallInt(value: number): Asn1 {
  return forge.asn1.create(
    Class.UNIVERSAL,
    Type.INTEGER,
    false,
    forge.asn1.integerToDer(value).getBytes(),
  );
}
export function bool(value: boolean): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.BOOLEAN, false, value ? '\xff' : '\x00');
}
export function nul(): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.NULL, false, '');
}
export function octets(bytes: Buffer): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, bytes.toString('binary'));
}
export function bitString(bytes: Buffer, unusedBits = 0): Asn1 {
  return forge.asn1.create(
    Class.UNIVERSAL,
    Type.BITSTRING,
    false,
    String.fromCharCode(unusedBits) + bytes.toString('binary'),
  );
}
export function utf8(text: string): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.UTF8, false, forge.util.encodeUtf8(text));
}
/** [tag] with explicit (constructed) or implicit primitive content. */
export function contextTag(tag: number, constructed: boolean, value: Asn1[] | Buffer): Asn1 {
  return forge.asn1.create(
    Class.CONTEXT_SPECIFIC,
    tag,
    constructed,
    Buffer.isBuffer(value) ? value.toString('binary') : value,
  );
}
/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always whole seconds. */
export function time(date: Date): Asn1 {
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  if (whole.getUTCFullYear() < 2050 && whole.getUTCFullYear() >= 1950) {
    return forge.asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, forge.asn1.dateToUtcTime(whole));
  }
  return forge.asn1.create(
    Class.UNIVERSAL,
    Type.GENERALIZEDTIME,
    false,
    forge.asn1.dateToGeneralizedTime(whole),
  );
}
/** Embeds already-encoded DER (an issuer Name, a SubjectPublicKeyInfo) unchanged. */
export function raw(der: Buffer): Asn1 {
  return fromDer(der);
}

// === readers ===

export function isTag(node: Asn1 | undefined, tagClass: number, type: number): node is Asn1 {
  // Context-specific tags are plain numbers, not members of forge's Type enum.
  return (
    node !== undefined && (node.tagClass as number) === tagClass && (node.type as number) === type
  );
}

export function children(node: Asn1 | undefined, what: string): Asn1[] {
  if (node === undefined || !Array.isArray(node.value)) {
    throw new DerError(`${what}: expected a constructed value`);
  }
  return node.value;
}

export function expectSequence(node: Asn1 | undefined, what: string): Asn1[] {
  if (!isTag(node, Class.UNIVERSAL, Type.SEQUENCE) || !node.constructed) {
    throw new DerError(`${what}: expected a SEQUENCE`);
  }
  return children(node, what);
}

export function primitiveBytes(node: Asn1 | undefined, what: string): Buffer {
  if (node === undefined || typeof node.value !== 'string') {
    throw new DerError(`${what}: expected a primitive value`);
  }
  return Buffer.from(node.value, 'binary');
}

export function readOid(node: Asn1 | undefined, what: string): string {
  if (!isTag(node, Class.UNIVERSAL, Type.OID)) throw new DerError(`${what}: expected an OID`);
  return forge.asn1.derToOid(
    forge.util.createBuffer(primitiveBytes(node, what).toString('binary')),
  );
}

/** BIT STRING content without the unused-bits octet; only whole-octet strings are accepted. */
export function readBitString(node: Asn1 | undefined, what: string): Buffer {
  if (!isTag(node, Class.UNIVERSAL, Type.BITSTRING)) {
    throw new DerError(`${what}: expected a BIT STRING`);
  }
  const bytes = primitiveBytes(node, what);
  if (bytes.length < 1 || bytes[0] !== 0) {
    throw new DerError(`${what}: BIT STRING with unused bits`);
  }
  return bytes.subarray(1);
}

export function readString(node: Asn1 | undefined, what: string): string {
  const bytes = primitiveBytes(node, what);
  if (node?.type === Type.UTF8) return bytes.toString('utf8');
  return bytes.toString('latin1');
}

export const Asn1Class = Class;
export const Asn1Type = Type;
