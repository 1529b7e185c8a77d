import { describe, expect, it } from '@jest/globals';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';

import {
  canonicalJson,
  DataProtector,
  decodeBody,
  DecodeError,
  isJsonContentType,
  MASK_MARKER,
} from './data-protection.js';

const KEY = 'unit-test-key-0123456789';

describe('DataProtector', () => {
  it('masks, then tokenizes, and counts both', () => {
    const p = new DataProtector(KEY);
    const doc = {
      items: [
        { iban: 'DE1', email: 'a@x', name: 'A' },
        { iban: 'DE2', email: 'b@x' },
      ],
    };
    const r = p.protect(doc, {
      mask: ['$.items[*].iban'],
      tokenize: ['$.items[*].email', '$.items[*].iban'],
    });
    expect(r).toEqual({ masked: 2, tokenized: 4 });
    expect(doc.items.map((i) => i.iban)).toEqual([MASK_MARKER, MASK_MARKER]);
    expect(doc.items[0]?.email).toMatch(/^tok_[A-Za-z0-9_-]{22}$/);
    expect(doc.items[0]?.name).toBe('A');
  });

  it('gives stable tokens per key, different across keys, joinable across ID types', () => {
    const a = new DataProtector(KEY);
    const b = new DataProtector('another-key-0123456789');
    expect(a.token('x@y')).toBe(a.token('x@y'));
    expect(a.token('x@y')).not.toBe(b.token('x@y'));
    expect(a.token('42')).toBe(a.token(42));
    expect(a.token('true')).toBe(a.token(true));
    expect(a.token('x')).not.toBe(a.token('"x"'));
    expect(a.token({ b: 1, a: 2 })).toBe(a.token({ a: 2, b: 1 }));
  });

  it('does not create fields the document lacks', () => {
    const doc = { other: 1 };
    expect(new DataProtector(KEY).protect(doc, { mask: ['$.items[*].iban'] })).toEqual({
      masked: 0,
      tokenized: 0,
    });
    expect(doc).toEqual({ other: 1 });
  });

  it('fails closed on a selector that does not parse', () => {
    expect(() => new DataProtector(KEY).protect({}, { mask: ['$..iban'] })).toThrow(
      /invalid data-protection selector/,
    );
  });

  it('refuses a short key', () => {
    expect(() => new DataProtector('short')).toThrow(/16 bytes/);
  });

  it('knows when data protection applies', () => {
    expect(DataProtector.applies(undefined)).toBe(false);
    expect(DataProtector.applies({ mask: [] })).toBe(false);
    expect(DataProtector.applies({ tokenize: ['$.a'] })).toBe(true);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }], a: null })).toBe('{"a":null,"b":[{"c":2,"d":1}]}');
  });
});

describe('isJsonContentType', () => {
  it.each([
    ['application/json', true],
    ['Application/JSON; charset=utf-8', true],
    ['application/problem+json', true],
    ['application/vnd.erp.v1+json;q=1', true],
    ['text/json', false],
    ['text/plain', false],
    ['application/jsonp', false],
    ['application/x-ndjson', false],
    [undefined, false],
  ])('%s → %s', (value, expected) => {
    expect(isJsonContentType(value)).toBe(expected);
  });
});

describe('decodeBody', () => {
  const text = Buffer.from('{"a":1}');
  it.each([
    ['identity', text, 'identity'],
    ['gzip', gzipSync(text), 'gzip'],
    ['x-gzip', gzipSync(text), 'x-gzip'],
    ['deflate (zlib)', deflateSync(text), 'deflate'],
    ['deflate (raw)', deflateRawSync(text), 'deflate'],
    ['br', brotliCompressSync(text), 'br'],
    ['gzip then br', brotliCompressSync(gzipSync(text)), 'gzip, br'],
  ])('decodes %s', async (_name, body, encoding) => {
    expect((await decodeBody(body, encoding, 1024)).toString()).toBe('{"a":1}');
  });

  it('stops a zip bomb at the limit', async () => {
    const bomb = gzipSync(Buffer.alloc(10 * 1024 * 1024, 0x20));
    await expect(decodeBody(bomb, 'gzip', 1024 * 1024)).rejects.toMatchObject({ kind: 'TooLarge' });
  });

  it.each([
    ['an unknown coding', text, 'zstd', 'Unsupported'],
    ['a corrupt body', Buffer.from('not gzip'), 'gzip', 'Corrupt'],
  ])('refuses %s', async (_name, body, encoding, kind) => {
    const e = await decodeBody(body, encoding, 1024).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DecodeError);
    expect(e).toMatchObject({ kind });
  });
});
