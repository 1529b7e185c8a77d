/**
 * Response data protection: `mask` selectors replace values by a fixed marker, `tokenize`
 * selectors by a stable keyed token, masks first (a value both masked and tokenized stays masked).
 *
 * Token: `tok_` + base64url(HMAC-SHA256(key, canonical(value))) cut to 22 characters (132 bits).
 * canonical(value) is the string itself for strings and canonical JSON (sorted keys) for every
 * other value: the same value always gets the same token under one key, and `"42"` and `42` get
 * the same one (APIs that type an ID differently still join). Tokens are not reversible; rotating
 * the key changes every token.
 */
import { createHmac } from 'node:crypto';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';

import type { DataProtection } from '../api/v1alpha1/index.js';
import { parseSelector, replaceSelected, type SelectorStep } from '../policy/selector.js';

export const MASK_MARKER = '***';
export const TOKEN_PREFIX = 'tok_';
export const TOKEN_LENGTH = 22;

export interface CompiledProtection {
  mask: readonly (readonly SelectorStep[])[];
  tokenize: readonly (readonly SelectorStep[])[];
  /** Selectors that did not parse (validation should have refused them; they fail closed). */
  invalid: readonly string[];
}

export interface ProtectionResult {
  masked: number;
  tokenized: number;
}

export class DataProtector {
  private readonly compiled = new WeakMap<DataProtection, CompiledProtection>();
  private readonly key: Buffer;

  constructor(tokenizeKey: string | Buffer) {
    this.key = typeof tokenizeKey === 'string' ? Buffer.from(tokenizeKey, 'utf8') : tokenizeKey;
    if (this.key.length < 16) throw new Error('tokenizeKey must be at least 16 bytes');
  }

  /** True when the policy asks for any masking or tokenization. */
  static applies(dp: DataProtection | undefined): dp is DataProtection {
    return dp !== undefined && ((dp.mask?.length ?? 0) > 0 || (dp.tokenize?.length ?? 0) > 0);
  }

  /** Compiled selectors, cached per (immutable, per-snapshot) DataProtection object. */
  compile(dp: DataProtection): CompiledProtection {
    let c = this.compiled.get(dp);
    if (c === undefined) {
      const invalid: string[] = [];
      const parse = (list: readonly string[] | undefined): SelectorStep[][] =>
        (list ?? []).flatMap((text) => {
          const p = parseSelector(text);
          if (!p.ok) invalid.push(text);
          return p.ok ? [p.steps] : [];
        });
      c = { mask: parse(dp.mask), tokenize: parse(dp.tokenize), invalid };
      this.compiled.set(dp, c);
    }
    return c;
  }

  /** Applies masks then tokens to a parsed JSON document, in place. */
  protect(document: unknown, dp: DataProtection): ProtectionResult {
    const c = this.compile(dp);
    if (c.invalid.length > 0) {
      throw new Error(`invalid data-protection selector ${JSON.stringify(c.invalid[0])}`);
    }
    let masked = 0;
    let tokenized = 0;
    for (const steps of c.mask) masked += replaceSelected(document, steps, () => MASK_MARKER);
    for (const steps of c.tokenize) {
      tokenized += replaceSelected(document, steps, (v) => (v === MASK_MARKER ? v : this.token(v)));
    }
    return { masked, tokenized };
  }

  token(value: unknown): string {
    const text = typeof value === 'string' ? value : canonicalJson(value);
    const mac = createHmac('sha256', this.key).update(text, 'utf8').digest('base64url');
    return TOKEN_PREFIX + mac.slice(0, TOKEN_LENGTH);
  }
}

/** JSON with object keys sorted (code-unit order), so equal values have one spelling. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** `application/json`, `application/problem+json`, `application/vnd.x+json; charset=utf-8`. */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

const unzip = {
  gzip: promisify<Buffer, ZlibOptions, Buffer>(gunzip),
  deflate: promisify<Buffer, ZlibOptions, Buffer>(inflate),
  deflateRaw: promisify<Buffer, ZlibOptions, Buffer>(inflateRaw),
  br: promisify<Buffer, ZlibOptions, Buffer>(brotliDecompress),
};

export class DecodeError extends Error {
  constructor(
    readonly kind: 'TooLarge' | 'Unsupported' | 'Corrupt',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Undoes `Content-Encoding` (identity, gzip, x-gzip, deflate, br; several in order), never
 * producing more than `limit` bytes (a zip bomb fails as TooLarge, not as memory exhaustion).
 */
export async function decodeBody(
  body: Buffer,
  contentEncoding: string | undefined,
  limit: number,
): Promise<Buffer> {
  if (contentEncoding === undefined || contentEncoding.trim() === '') return body;
  const codings = contentEncoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity')
    .reverse();
  let out = body;
  for (const coding of codings) {
    const opts: ZlibOptions = { maxOutputLength: limit };
    try {
      if (coding === 'gzip' || coding === 'x-gzip') out = await unzip.gzip(out, opts);
      else if (coding === 'br') out = await unzip.br(out, opts);
      else if (coding === 'deflate') {
        // RFC 9110 deflate is zlib-wrapped; some servers send raw deflate.
        out = await unzip.deflate(out, opts).catch((e: unknown) => {
          if (isTooLarge(e)) throw e;
          return unzip.deflateRaw(out, opts);
        });
      } else {
        throw new DecodeError(
          'Unsupported',
          `content-encoding ${JSON.stringify(coding)} is not supported`,
        );
      }
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      if (isTooLarge(e)) throw new DecodeError('TooLarge', `decoded body exceeds ${limit} bytes`);
      throw new DecodeError('Corrupt', `body is not valid ${coding}`);
    }
  }
  return out;
}

function isTooLarge(e: unknown): boolean {
  return (
    e instanceof RangeError ||
    (typeof e === 'object' &&
      e !== null &&
      (e as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE')
  );
}
