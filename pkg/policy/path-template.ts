/**
 * Path templates of HTTP rules (docs/reference/path-normalisation.md, "Templates").
 *
 *  - `/` is the root; otherwise `/`-separated non-empty segments, no trailing slash.
 *  - A literal segment is the *decoded* text it matches (RFC 3986 pchar without `%` and `;`), so
 *    `/api/v1/customers` matches the request `/api/v1/%63ustomers` too.
 *  - `{name}` is a whole segment and matches exactly one non-empty segment.
 *  - A final `**` matches zero or more further segments: `/api/v1/customers/**` matches
 *    `/api/v1/customers` itself and everything below it.
 *
 * Specificity orders the templates that match one path: compared segment by segment from the left,
 * at the first difference a literal beats `{param}`, which beats `**`; a template that ends there
 * beats a `**` that would match zero further segments. `specificity` encodes this as a string
 * ('0' literal, '1' param, '2' for `**`) whose plain string order is that precedence.
 */

export type TemplateSegment = { kind: 'literal'; value: string } | { kind: 'param'; name: string };

export interface PathTemplate {
  source: string;
  segments: readonly TemplateSegment[];
  /** True when the template ends with `/**`. */
  rest: boolean;
  /** Precedence key; a smaller string is more specific. */
  specificity: string;
}

export type ParseTemplateResult =
  { ok: true; template: PathTemplate } | { ok: false; message: string };

/** Longest template accepted; the CRD has the same bound. */
export const MAX_TEMPLATE_LENGTH = 1024;

const PARAM = /^\{[A-Za-z_][A-Za-z0-9_]*\}$/;
const LITERAL = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/;

function fail(message: string): ParseTemplateResult {
  return { ok: false, message };
}

/** Parses and checks one template; the message says what is wrong, for `spec.rules[i].paths[j]`. */
export function parsePathTemplate(source: string): ParseTemplateResult {
  if (typeof source !== 'string') return fail('must be a string');
  if (source.length > MAX_TEMPLATE_LENGTH) {
    return fail(`must be at most ${MAX_TEMPLATE_LENGTH} characters`);
  }
  if (!source.startsWith('/')) return fail("must start with '/'");
  if (source === '/')
    return { ok: true, template: { source, segments: [], rest: false, specificity: '' } };
  const parts = source.slice(1).split('/');
  const segments: TemplateSegment[] = [];
  let specificity = '';
  let rest = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    const last = i === parts.length - 1;
    if (part === '') {
      return fail(
        last
          ? "must not end with '/' (write the path without it)"
          : "must not contain empty segments ('//')",
      );
    }
    if (/^\.+$/.test(part)) return fail("must not contain '.' or '..' segments");
    if (part === '**') {
      if (!last) return fail("'**' is only allowed as the last segment");
      rest = true;
      specificity += '2';
      continue;
    }
    if (part.startsWith('{') || part.endsWith('}')) {
      if (!PARAM.test(part)) {
        return fail(`segment '${part}' must be a whole-segment parameter like '{id}'`);
      }
      segments.push({ kind: 'param', name: part.slice(1, -1) });
      specificity += '1';
      continue;
    }
    if (part.includes('%'))
      return fail('must not contain percent-encoding: write the decoded path');
    if (part.includes(';')) return fail("must not contain ';' path parameters");
    if (!LITERAL.test(part))
      return fail(`segment '${part}' contains characters not allowed in a path`);
    segments.push({ kind: 'literal', value: part });
    specificity += '0';
  }
  return { ok: true, template: { source, segments, rest, specificity } };
}

/** True when the template matches the decoded segments (the reference semantics; compile.ts builds tries). */
export function templateMatches(template: PathTemplate, segments: readonly string[]): boolean {
  const fixed = template.segments.length;
  if (template.rest ? segments.length < fixed : segments.length !== fixed) return false;
  for (let i = 0; i < fixed; i++) {
    const t = template.segments[i];
    const s = segments[i];
    if (t === undefined || s === undefined || s === '') return false;
    if (t.kind === 'literal' && t.value !== s) return false;
  }
  return true;
}
