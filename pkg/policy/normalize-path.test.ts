import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { PathRejection } from './decision-types.js';
import { isValidMethodToken, normalizeRequestTarget } from './normalize-path.js';

const R = PathRejection;

/** True when `s` holds a C0 control character or DEL. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

describe('normalizeRequestTarget: accepted targets', () => {
  const cases: [string, string, string, string[]][] = [
    // [name, target, path, segments]
    ['root', '/', '/', []],
    ['plain path', '/api/v1/customers', '/api/v1/customers', ['api', 'v1', 'customers']],
    [
      'encoded unreserved letter decodes',
      '/api/v1/%63ustomers',
      '/api/v1/customers',
      ['api', 'v1', 'customers'],
    ],
    ['lower-case hex', '/a/caf%c3%a9', '/a/café', ['a', 'café']],
    ['encoded space is data', '/a/b%20c', '/a/b c', ['a', 'b c']],
    ['encoded braces are data', '/a/%7Bid%7D', '/a/{id}', ['a', '{id}']],
    ['encoded percent not followed by hex', '/a/100%25off', '/a/100%off', ['a', '100%off']],
    ['lone encoded percent', '/a/%25', '/a/%', ['a', '%']],
    ['asterisk segment', '/a/*', '/a/*', ['a', '*']],
    ['dots inside a segment', '/a/b.c/...d', '/a/b.c/...d', ['a', 'b.c', '...d']],
    [
      'sub-delims, colon and at',
      "/a/b:c@d!$&'()*+,=",
      "/a/b:c@d!$&'()*+,=",
      ['a', "b:c@d!$&'()*+,="],
    ],
    ['CJK through UTF-8 escapes', '/a/%E6%97%A5', '/a/日', ['a', '日']],
    ['exactly 2048 characters', '/' + 'a'.repeat(2047), '/' + 'a'.repeat(2047), ['a'.repeat(2047)]],
  ];
  it.each(cases)('%s: %s', (_name, target, path, segments) => {
    const r = normalizeRequestTarget(target);
    expect(r).toEqual({ ok: true, path, query: '', segments });
  });

  it('splits off the query and drops the fragment before looking at the path', () => {
    expect(normalizeRequestTarget('/a/b?x=%2F..//&y=1#frag/../z')).toEqual({
      ok: true,
      path: '/a/b',
      query: 'x=%2F..//&y=1',
      segments: ['a', 'b'],
    });
    expect(normalizeRequestTarget('/a#/../admin?q=1')).toMatchObject({
      ok: true,
      path: '/a',
      query: '',
    });
    expect(normalizeRequestTarget('/?q')).toMatchObject({ ok: true, path: '/', query: 'q' });
    expect(normalizeRequestTarget('/a?')).toMatchObject({ ok: true, path: '/a', query: '' });
  });
});

describe('normalizeRequestTarget: adversarial targets are rejected, never repaired', () => {
  const cases: [string, unknown, PathRejection][] = [
    ['empty string', '', R.NotAbsolute],
    ['asterisk-form', '*', R.NotAbsolute],
    ['absolute-form', 'http://evil/', R.NotAbsolute],
    ['absolute-form with path', 'HTTP://evil.example/api/v1/customers', R.NotAbsolute],
    ['authority-form', 'evil.example:443', R.NotAbsolute],
    ['relative path', 'api/v1', R.NotAbsolute],
    ['query only', '?x=1', R.NotAbsolute],
    ['fragment only', '#x', R.NotAbsolute],
    ['leading backslash', '\\a', R.NotAbsolute],
    ['not a string', 42, R.NotAbsolute],
    ['leading double slash', '//a', R.EmptySegment],
    ['double slash inside', '/a//b', R.EmptySegment],
    ['trailing slash', '/a/', R.EmptySegment],
    ['trailing slash before query', '/a/?q=1', R.EmptySegment],
    ['only slashes', '//', R.EmptySegment],
    ['dot segment', '/a/./b', R.DotSegment],
    ['dot-dot segment', '/a/../b', R.DotSegment],
    ['leading dot-dot', '/../etc/passwd', R.DotSegment],
    ['final dot', '/a/.', R.DotSegment],
    ['dots only', '/a/...', R.DotSegment],
    ['encoded slash %2F', '/a%2Fb', R.EncodedSeparator],
    ['encoded slash %2f', '/a%2fb', R.EncodedSeparator],
    ['encoded backslash %5C', '/a%5Cb', R.EncodedSeparator],
    ['encoded backslash %5c', '/a/%5c..', R.EncodedSeparator],
    ['encoded question mark', '/a%3Fb', R.EncodedSeparator],
    ['encoded hash', '/a%23b', R.EncodedSeparator],
    ['encoded dot-dot', '/a/%2E%2E/b', R.EncodedDot],
    ['lower-case encoded dot', '/a/%2e', R.EncodedDot],
    ['half-encoded dot-dot', '/a/.%2E/b', R.EncodedDot],
    ['encoded dot inside a name', '/a/b%2Ejson', R.EncodedDot],
    ['double-encoded slash', '/a/%252F', R.DoubleEncoding],
    ['double-encoded slash, lower case', '/a%252fb', R.DoubleEncoding],
    ['double encoding through escaped hex digits', '/a/%25%32%46', R.DoubleEncoding],
    ['triple encoding', '/a/%25252F', R.DoubleEncoding],
    ['double-encoded letter', '/a/%2541', R.DoubleEncoding],
    ['path parameter', '/a;x=1', R.PathParameter],
    ['path parameter in the middle', '/a;jsessionid=1/b', R.PathParameter],
    ['encoded semicolon', '/a%3Bx', R.PathParameter],
    ['raw backslash', '/a\\b', R.Backslash],
    ['raw backslash dot-dot', '/a/\\..\\admin', R.Backslash],
    ['encoded NUL', '/a%00', R.ControlCharacter],
    ['raw NUL', '/a\u0000b', R.ControlCharacter],
    ['raw tab', '/a\tb', R.ControlCharacter],
    ['raw CRLF (header injection)', '/a\r\nHost: evil', R.ControlCharacter],
    ['raw control in the query', '/a?x=\n', R.ControlCharacter],
    ['raw control in the fragment', '/a#\u0001', R.ControlCharacter],
    ['raw DEL', '/a\u007f', R.ControlCharacter],
    ['encoded LF', '/a%0A', R.ControlCharacter],
    ['encoded tab', '/a%09b', R.ControlCharacter],
    ['encoded DEL', '/a%7F', R.ControlCharacter],
    ['encoded C1 NEL', '/a%C2%85', R.ControlCharacter],
    ['raw space', '/a b', R.InvalidCharacter],
    ['raw unicode', '/a/é', R.InvalidCharacter],
    ['raw UTF-8 bytes seen as latin1', '/a/\u00c3\u00a9', R.InvalidCharacter],
    ['raw braces', '/a/{id}', R.InvalidCharacter],
    ['raw angle brackets', '/a/<script>', R.InvalidCharacter],
    ['raw pipe', '/a|b', R.InvalidCharacter],
    ['raw quote', '/a"b', R.InvalidCharacter],
    ['raw brackets', '/a/[0]', R.InvalidCharacter],
    ['raw line separator', '/a\u2028b', R.InvalidCharacter],
    ['bad hex', '/a%zz', R.BadPercentEncoding],
    ['truncated escape', '/a%4', R.BadPercentEncoding],
    ['lone percent', '/a%', R.BadPercentEncoding],
    ['percent before escape', '/a%%41', R.BadPercentEncoding],
    ['truncated escape before slash', '/a%4/b', R.BadPercentEncoding],
    ['truncated UTF-8', '/a/%C3', R.BadPercentEncoding],
    ['invalid UTF-8 byte', '/a/%FF', R.BadPercentEncoding],
    ['overlong UTF-8 dot', '/a/%C0%AE%C0%AE', R.BadPercentEncoding],
    ['overlong UTF-8 slash', '/a/%C0%AF', R.BadPercentEncoding],
    ['UTF-8 encoded surrogate', '/a/%ED%A0%80', R.BadPercentEncoding],
    ['fullwidth solidus', '/a/%EF%BC%8F', R.EncodedSeparator],
    ['fullwidth reverse solidus', '/a/x%EF%BC%BCy', R.EncodedSeparator],
    ['fullwidth dot-dot', '/a/%EF%BC%8E%EF%BC%8E', R.EncodedDot],
    ['two-dot leader', '/a/%E2%80%A5', R.EncodedDot],
    ['over-long target', '/' + 'a'.repeat(2048), R.TooLong],
    ['over-long through the query', '/a?' + 'q'.repeat(4096), R.TooLong],
  ];
  it.each(cases)('%s', (_name, target, rejection) => {
    const r = normalizeRequestTarget(target as string);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.rejection).toBe(rejection);
    expect(r.message.length).toBeGreaterThan(0);
    // The message is safe to log: no raw control characters.
    expect(hasControl(r.message)).toBe(false);
  });

  it('honours a custom length limit', () => {
    expect(normalizeRequestTarget('/abcdefghij', { maxLength: 10 })).toMatchObject({
      ok: false,
      rejection: R.TooLong,
    });
    expect(normalizeRequestTarget('/abcdefghi', { maxLength: 10 }).ok).toBe(true);
  });

  it('names absolute-form explicitly, so the proxy author knows what to convert', () => {
    const r = normalizeRequestTarget('http://finance:8080/api');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain('absolute-form');
  });
});

describe('isValidMethodToken', () => {
  it.each([
    'GET',
    'HEAD',
    'POST',
    'PUT',
    'PATCH',
    'DELETE',
    'OPTIONS',
    'PROPFIND',
    'M-SEARCH',
    'X_1',
  ])('accepts %s', (m) => expect(isValidMethodToken(m)).toBe(true));
  it.each([
    ['empty', ''],
    ['lower case', 'get'],
    ['mixed case', 'GeT'],
    ['inner space', 'G ET'],
    ['trailing space', 'GET '],
    ['leading space', ' GET'],
    ['CRLF', 'GET\r\n'],
    ['tab', 'GET\t'],
    ['separator', 'GET/1'],
    ['non-ASCII', 'GÉT'],
    ['too long', 'A'.repeat(33)],
    ['not a string', 7],
  ])('rejects %s', (_name, m) => expect(isValidMethodToken(m as string)).toBe(false));
});

describe('normalizeRequestTarget: properties', () => {
  // Tokens that keep a segment acceptable: pchar characters and escapes of harmless bytes.
  const safeToken = fc.oneof(
    fc.constantFrom(..."abcXYZ019-_~!$&'()*+,=:@".split('')),
    fc.constantFrom('%41', '%20', '%7B', '%7d', '%C3%A9', '%E6%97%A5', '%25', '.'),
  );
  const segment = fc.array(safeToken, { minLength: 1, maxLength: 6 });
  const target = fc.array(segment, { maxLength: 6 });
  const render = (segs: string[][]): string =>
    segs.length === 0 ? '/' : segs.map((s) => '/' + s.join('')).join('');

  it('generated safe targets are mostly accepted, and decoding is stable', () => {
    fc.assert(
      fc.property(target, (segs) => {
        const r = normalizeRequestTarget(render(segs));
        if (!r.ok) return; // e.g. a segment of dots only, or '%25' followed by '%41'
        expect(r.segments.length).toBe(segs.length);
        for (const s of r.segments) {
          expect(hasControl(s)).toBe(false);
          expect(s).not.toMatch(/[/\\]/);
        }
      }),
    );
  });

  const dotSegment = fc.constantFrom('.', '..', '...');
  const encodedInSegment: fc.Arbitrary<[string, PathRejection]> = fc.constantFrom(
    ['%2F', R.EncodedSeparator],
    ['%2f', R.EncodedSeparator],
    ['%5C', R.EncodedSeparator],
    ['%5c', R.EncodedSeparator],
    ['%3F', R.EncodedSeparator],
    ['%2E', R.EncodedDot],
    ['%2e%2e', R.EncodedDot],
    ['%EF%BC%8F', R.EncodedSeparator],
  );

  it('an accepted target with a dot segment inserted anywhere is rejected (DotSegment)', () => {
    fc.assert(
      fc.property(target, dotSegment, fc.nat(), (segs, dots, at) => {
        fc.pre(normalizeRequestTarget(render(segs)).ok);
        const i = at % (segs.length + 1);
        const mutated = [...segs.slice(0, i), [dots], ...segs.slice(i)];
        const r = normalizeRequestTarget(render(mutated));
        expect(r).toMatchObject({ ok: false, rejection: R.DotSegment });
      }),
    );
  });

  it('an accepted target with an encoded separator or dot inserted anywhere is rejected', () => {
    fc.assert(
      fc.property(
        target,
        encodedInSegment,
        fc.nat(),
        fc.nat(),
        (segs, [token, rejection], a, b) => {
          fc.pre(segs.length > 0 && normalizeRequestTarget(render(segs)).ok);
          const i = a % segs.length;
          const seg = segs[i] ?? [];
          const j = b % (seg.length + 1);
          const mutated = segs.map((s, k) =>
            k === i ? [...seg.slice(0, j), token, ...seg.slice(j)] : s,
          );
          const r = normalizeRequestTarget(render(mutated));
          expect(r).toMatchObject({ ok: false, rejection });
        },
      ),
    );
  });

  it('an accepted target with a double-encoded separator inserted is rejected', () => {
    fc.assert(
      fc.property(
        target,
        fc.constantFrom('%252F', '%255C', '%252E%252E'),
        fc.nat(),
        (segs, token, a) => {
          fc.pre(normalizeRequestTarget(render(segs)).ok);
          const i = a % (segs.length + 1);
          const mutated = [...segs.slice(0, i), ['x', token], ...segs.slice(i)];
          expect(normalizeRequestTarget(render(mutated))).toMatchObject({
            ok: false,
            rejection: R.DoubleEncoding,
          });
        },
      ),
    );
  });

  it('never throws and always answers ok or a known rejection, for any string', () => {
    const known = new Set<string>(Object.values(R));
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 64 }), fc.string({ unit: 'binary', maxLength: 64 })),
        (s) => {
          for (const t of [s, '/' + s]) {
            const r = normalizeRequestTarget(t);
            if (r.ok) {
              expect(r.path.startsWith('/')).toBe(true);
              for (const seg of r.segments) {
                expect(seg).not.toBe('');
                expect(hasControl(seg)).toBe(false);
                expect(seg).not.toMatch(/^\.+$|[/\\;]/);
              }
            } else {
              expect(known.has(r.rejection)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
