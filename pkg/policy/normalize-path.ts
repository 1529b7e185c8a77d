/**
 * The one request-target normalisation of erpguard (docs/reference/path-normalisation.md).
 *
 * Policies allow paths; a backend routes on its own reading of the same bytes. Every place where
 * two readings could differ is refused instead of guessed, so a request can never be matched as one
 * path and served as another. The algorithm, in order (the first failing step names the rejection):
 *
 *  1. The target must be a string of at most `maxLength` (default 2048) UTF-16 code units: TooLong.
 *  2. No raw control character (U+0000–U+001F, U+007F) anywhere, query and fragment included:
 *     ControlCharacter.
 *  3. Split at the first `?` (query) and the first `#` (fragment, discarded). The query is returned
 *     raw and is never used for matching.
 *  4. The path must start with `/` (origin-form). `*`, `example.com:443` and absolute-form
 *     `http://host/path` are NotAbsolute: the outbound proxy converts absolute-form before calling.
 *  5. `/` alone is the root (no segments). Otherwise split at raw `/`; every segment must be
 *     non-empty, so `//a`, `/a//b` and a trailing slash (`/a/`) are EmptySegment. Nothing is
 *     collapsed: many routers treat `/a/` as `/a`, others do not, so it is refused rather than
 *     guessed.
 *  6. Within a segment, per raw character: `\` is Backslash, `;` is PathParameter, anything that is
 *     not an RFC 3986 `pchar` (space, `"`, `<`, `>`, `[`, `]`, `^`, backtick, `{`, `|`, `}`,
 *     non-ASCII) is InvalidCharacter. `%` must be followed by two hex digits (BadPercentEncoding).
 *  7. A segment that is `.`, `..` or made only of dots is DotSegment (Windows-style servers trim
 *     trailing dots, so `...` is as ambiguous as `..`).
 *  8. Percent-decode exactly once. The decoded byte must not be a delimiter: `%2F` `/`, `%5C` `\`,
 *     `%3F` `?`, `%23` `#` are EncodedSeparator; `%2E` is EncodedDot (no client needs to encode an
 *     unreserved dot); `%3B` is PathParameter; `%00`–`%1F`, `%7F` are ControlCharacter. A segment
 *     whose decoded form still contains `%` + two hex digits (`%252F`, `%25%32%46`) is
 *     DoubleEncoding: a second decoding anywhere downstream would turn it into a separator. Every other escape decodes (`%41` is `A`, `%20` is a space, so
 *     `/api/%63ustomers` is the same path as `/api/customers`, exactly as a decoding router sees it).
 *  9. Bytes >= 0x80 must form valid UTF-8 (no overlong forms such as `%C0%AE`): BadPercentEncoding.
 *     Decoded C1 controls (U+0080–U+009F) are ControlCharacter. A decoded segment whose NFKC form
 *     contains `/` or `\` (fullwidth solidus `%EF%BC%8F`) is EncodedSeparator, and one whose NFKC form
 *     is made only of dots is EncodedDot, because some stacks apply compatibility normalisation.
 *
 * The result is the list of decoded segments and their `/`-joined form. A target is never repaired:
 * it is accepted exactly as sent or rejected with one PathRejection code and a message.
 */
import { PathRejection } from './decision-types.js';

export const DEFAULT_MAX_TARGET_LENGTH = 2048;
/** Longest accepted method token; real methods are short, this only bounds the work. */
export const MAX_METHOD_LENGTH = 32;

export interface NormalizeLimits {
  /** Maximum length of the whole target (path, query and fragment), default 2048. */
  maxLength?: number;
}

export interface NormalizedTarget {
  ok: true;
  /** Decoded path, `/` + segments joined by `/`; `/` for the root. */
  path: string;
  /** Raw query without the `?` (empty when absent). Not decoded and not used for matching. */
  query: string;
  /** Decoded, non-empty segments; empty for the root. */
  segments: readonly string[];
}

export interface RejectedTarget {
  ok: false;
  rejection: PathRejection;
  /** Says what was wrong and where; never echoes raw control characters. */
  message: string;
}

export type NormalizeResult = NormalizedTarget | RejectedTarget;

// Character classes of raw path characters (ASCII only; everything >= 0x80 is invalid raw).
const C_INVALID = 0;
const C_OK = 1;
const C_PERCENT = 2;
const C_SEMICOLON = 3;
const C_BACKSLASH = 4;
const C_CONTROL = 5;

const RAW_CLASS = new Uint8Array(128);
{
  for (let c = 0; c < 0x20; c++) RAW_CLASS[c] = C_CONTROL;
  RAW_CLASS[0x7f] = C_CONTROL;
  // RFC 3986 pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
  const allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@";
  for (let i = 0; i < allowed.length; i++) RAW_CLASS[allowed.charCodeAt(i)] = C_OK;
  RAW_CLASS[0x25] = C_PERCENT;
  RAW_CLASS[0x3b] = C_SEMICOLON;
  RAW_CLASS[0x5c] = C_BACKSLASH;
}

// Value of a hex digit, or -1.
const HEX = new Int8Array(128).fill(-1);
{
  const digits = '0123456789abcdef';
  for (let i = 0; i < 16; i++) {
    HEX[digits.charCodeAt(i)] = i;
    HEX[digits.toUpperCase().charCodeAt(i)] = i;
  }
}

function hexValue(code: number): number {
  return code < 128 ? (HEX[code] ?? -1) : -1;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const ROOT: NormalizedTarget = Object.freeze({
  ok: true,
  path: '/',
  query: '',
  segments: Object.freeze([]),
});

function reject(rejection: PathRejection, message: string): RejectedTarget {
  return { ok: false, rejection, message };
}

function hex2(code: number): string {
  return `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * Normalises a raw HTTP request target (origin-form: path, optional `?query`, optional `#fragment`)
 * following the algorithm at the top of this file. Never throws, also for non-string input.
 */
export function normalizeRequestTarget(target: string, limits?: NormalizeLimits): NormalizeResult {
  if (typeof target !== 'string') {
    return reject(PathRejection.NotAbsolute, 'request target is not a string');
  }
  const maxLength = limits?.maxLength ?? DEFAULT_MAX_TARGET_LENGTH;
  const n = target.length;
  if (n > maxLength) {
    return reject(
      PathRejection.TooLong,
      `request target is ${n} characters long, the limit is ${maxLength}`,
    );
  }
  if (n === 0 || target.charCodeAt(0) !== 0x2f) {
    return (
      controlCharacter(target) ?? reject(PathRejection.NotAbsolute, notAbsoluteMessage(target))
    );
  }

  // One pass over the path (the hot path of every decision): classify each character, cut
  // segments at '/', stop at '?' or '#'. Any finding is re-checked against step 2 (a control
  // character anywhere wins) so the reported rejection follows the documented order.
  const segments: string[] = [];
  let start = 1;
  let hasPercent = false;
  let anyPercent = false;
  let onlyDots = true;
  let i = 1;
  for (; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x2f) {
      const seg = finishSegment(target, start, i, hasPercent, onlyDots);
      if (typeof seg !== 'string') return controlCharacter(target) ?? seg;
      segments.push(seg);
      start = i + 1;
      hasPercent = false;
      onlyDots = true;
      continue;
    }
    if (c === 0x3f || c === 0x23) break;
    if (c !== 0x2e) onlyDots = false;
    const cls = c < 128 ? RAW_CLASS[c] : C_INVALID;
    if (cls === C_OK) continue;
    if (cls === C_PERCENT) {
      hasPercent = true;
      anyPercent = true;
      continue;
    }
    return controlCharacter(target) ?? rawCharacterProblem(cls, c, i);
  }
  const pathEnd = i;

  // Query and fragment: only control characters matter there.
  let query = '';
  if (pathEnd < n) {
    const problem = controlCharacter(target, pathEnd);
    if (problem !== undefined) return problem;
    if (target.charCodeAt(pathEnd) === 0x3f) {
      const hash = target.indexOf('#', pathEnd + 1);
      query = target.slice(pathEnd + 1, hash < 0 ? n : hash);
    }
  }
  if (pathEnd === 1) return query === '' ? ROOT : { ...ROOT, query };

  const last = finishSegment(target, start, pathEnd, hasPercent, onlyDots);
  if (typeof last !== 'string') return last;
  segments.push(last);
  const path = anyPercent ? '/' + segments.join('/') : target.slice(0, pathEnd);
  return { ok: true, path, query, segments };
}

/** Step 2: the first raw control character at or after `from`, as a rejection. */
function controlCharacter(target: string, from = 0): RejectedTarget | undefined {
  for (let i = from; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) {
      return reject(
        PathRejection.ControlCharacter,
        `raw control character ${hex2(c)} at offset ${i} of the request target`,
      );
    }
  }
  return undefined;
}

function rawCharacterProblem(cls: number | undefined, c: number, i: number): RejectedTarget {
  if (cls === C_SEMICOLON) {
    return reject(PathRejection.PathParameter, `';' path parameter at offset ${i}`);
  }
  if (cls === C_BACKSLASH) return reject(PathRejection.Backslash, `raw '\\' at offset ${i}`);
  return reject(
    PathRejection.InvalidCharacter,
    `character U+${c.toString(16).toUpperCase().padStart(4, '0')} at offset ${i} is not allowed raw in a path; percent-encode it`,
  );
}

function notAbsoluteMessage(target: string): string {
  if (target.length === 0) return 'request target is empty';
  if (target === '*') return "asterisk-form request target '*' is not a path";
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target)) {
    return 'absolute-form request target (scheme://host/path) is not accepted here; send origin-form (/path)';
  }
  return "request target must start with '/'";
}

/** Checks the raw segment target[start, end) (already scanned) and returns its decoded value. */
function finishSegment(
  target: string,
  start: number,
  end: number,
  hasPercent: boolean,
  onlyDots: boolean,
): string | RejectedTarget {
  if (start === end) {
    return reject(
      PathRejection.EmptySegment,
      target.charCodeAt(end) === 0x2f
        ? `empty path segment ('//') at offset ${start}`
        : `empty path segment at offset ${start}: the path must not end with '/'`,
    );
  }
  if (onlyDots) {
    return reject(
      PathRejection.DotSegment,
      `dot segment '${target.slice(start, end)}' at offset ${start}`,
    );
  }
  return hasPercent ? percentDecode(target, start, end) : target.slice(start, end);
}

function percentDecode(target: string, start: number, end: number): string | RejectedTarget {
  const bytes: number[] = [];
  let nonAscii = false;
  for (let i = start; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c !== 0x25) {
      bytes.push(c);
      continue;
    }
    const hi = i + 1 < end ? hexValue(target.charCodeAt(i + 1)) : -1;
    const lo = i + 2 < end ? hexValue(target.charCodeAt(i + 2)) : -1;
    if (hi < 0 || lo < 0) {
      return reject(
        PathRejection.BadPercentEncoding,
        `'%' at offset ${i} is not followed by two hex digits`,
      );
    }
    const b = hi * 16 + lo;
    const problem = decodedByteProblem(b, i);
    if (problem !== undefined) return problem;
    if (b >= 0x80) nonAscii = true;
    bytes.push(b);
    i += 2;
  }
  const double = doubleEncodingOffset(bytes);
  if (double >= 0) {
    return reject(
      PathRejection.DoubleEncoding,
      `the segment at offset ${start} decodes to '${String.fromCharCode(...bytes.slice(double, double + 3))}', another percent-escape (double encoding)`,
    );
  }
  if (!nonAscii) return String.fromCharCode(...bytes);
  let text: string;
  try {
    text = utf8.decode(Uint8Array.from(bytes));
  } catch {
    return reject(
      PathRejection.BadPercentEncoding,
      `percent-encoded bytes in the segment at offset ${start} are not valid UTF-8`,
    );
  }
  return unicodeProblem(text, start) ?? text;
}

/** Index of a decoded `%` followed by two hex digits (`%252F`, `%25%32%46`), or -1. */
function doubleEncodingOffset(bytes: readonly number[]): number {
  for (let i = 0; i + 2 < bytes.length; i++) {
    if (bytes[i] === 0x25 && hexValue(bytes[i + 1] ?? 0) >= 0 && hexValue(bytes[i + 2] ?? 0) >= 0) {
      return i;
    }
  }
  return -1;
}

function decodedByteProblem(b: number, i: number): RejectedTarget | undefined {
  switch (b) {
    case 0x2f:
    case 0x5c:
    case 0x3f:
    case 0x23:
      return reject(
        PathRejection.EncodedSeparator,
        `encoded '${String.fromCharCode(b)}' (${hex2(b)}) at offset ${i}`,
      );
    case 0x2e:
      return reject(PathRejection.EncodedDot, `encoded '.' (%2E) at offset ${i}`);
    case 0x3b:
      return reject(PathRejection.PathParameter, `encoded ';' (%3B) at offset ${i}`);
    default:
      if (b < 0x20 || b === 0x7f) {
        return reject(
          PathRejection.ControlCharacter,
          `encoded control character (${hex2(b)}) at offset ${i}`,
        );
      }
      return undefined;
  }
}

function unicodeProblem(text: string, start: number): RejectedTarget | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80 && c <= 0x9f) {
      return reject(
        PathRejection.ControlCharacter,
        `encoded C1 control character U+00${c.toString(16).toUpperCase()} in the segment at offset ${start}`,
      );
    }
  }
  const folded = text.normalize('NFKC');
  if (folded.includes('/') || folded.includes('\\')) {
    return reject(
      PathRejection.EncodedSeparator,
      `the segment at offset ${start} contains a character that compatibility normalisation (NFKC) turns into '/' or '\\'`,
    );
  }
  if (/^\.+$/.test(folded)) {
    return reject(
      PathRejection.EncodedDot,
      `the segment at offset ${start} is a dot segment after compatibility normalisation (NFKC)`,
    );
  }
  return undefined;
}

// RFC 9110 tchar without lower-case letters: methods are case-sensitive, so `get` is not `GET`.
const METHOD_CHAR = new Uint8Array(128);
{
  const allowed = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (let i = 0; i < allowed.length; i++) METHOD_CHAR[allowed.charCodeAt(i)] = 1;
}

/** True when `method` is a non-empty RFC 9110 token made of upper-case tchar, at most 32 long. */
export function isValidMethodToken(method: string): boolean {
  if (typeof method !== 'string') return false;
  const n = method.length;
  if (n === 0 || n > MAX_METHOD_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = method.charCodeAt(i);
    if (c >= 128 || METHOD_CHAR[c] !== 1) return false;
  }
  return true;
}
