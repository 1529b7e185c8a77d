/**
 * The canonical spec hash that approvals are bound to. Documented in docs/reference/spec-hash.md;
 * changing this algorithm voids every approval, so it is versioned by its `sha256:` prefix.
 *
 * Algorithm:
 *  1. Apply defaults: `mode: Enforce`, `certificateTTL: 1h`, `rateLimit.burst = requestsPerSecond`.
 *  2. Canonicalise values: durations to seconds (`1h` → `3600s`), `validUntil` to UTC ISO 8601 with
 *     milliseconds, selectors to one spelling (`$['a']` → `$.a`); sort and de-duplicate the
 *     order-free lists (HTTP methods, paths, gRPC methods, mask and tokenize selectors).
 *     Rule order is kept: decisions and audit records name rules by index.
 *  3. Drop empty lists, empty objects and empty strings (`mask: []` means the same as no `mask`).
 *  4. Serialise as JSON with object keys sorted by UTF-16 code units, no whitespace.
 *  5. `sha256:` + lower-case hex SHA-256 of the UTF-8 bytes.
 * Independent of key order, YAML formatting (quotes, flow or block style, comments) and defaults.
 */
import { createHash } from 'node:crypto';
import { DEFAULT_CERTIFICATE_TTL, DEFAULT_MODE } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicySpec } from '../api/v1alpha1/index.js';
import { canonicalDuration } from './duration.js';
import { canonicalSelector, parseSelector } from './selector.js';

const sortedUnique = (values: readonly string[] | undefined): string[] | undefined =>
  values === undefined ? undefined : [...new Set(values)].sort();

function canonicalInstant(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? text : new Date(ms).toISOString();
}

function canonicalSelectors(values: readonly string[] | undefined): string[] | undefined {
  return sortedUnique(
    values?.map((value) => {
      const parsed = parseSelector(value);
      return parsed.ok ? canonicalSelector(parsed.steps) : value;
    }),
  );
}

/** The spec with defaults applied and values canonicalised (steps 1 and 2). */
export function canonicalSpec(spec: ErpIntegrationPolicySpec): unknown {
  return {
    source: spec.source,
    destination: spec.destination,
    mode: spec.mode ?? DEFAULT_MODE,
    rules: spec.rules.map((rule) =>
      rule.grpc
        ? { grpc: { service: rule.grpc.service, methods: sortedUnique(rule.grpc.methods) } }
        : { methods: sortedUnique(rule.methods), paths: sortedUnique(rule.paths) },
    ),
    rateLimit: spec.rateLimit && {
      requestsPerSecond: spec.rateLimit.requestsPerSecond,
      burst: spec.rateLimit.burst ?? spec.rateLimit.requestsPerSecond,
    },
    dataProtection: spec.dataProtection && {
      mask: canonicalSelectors(spec.dataProtection.mask),
      tokenize: canonicalSelectors(spec.dataProtection.tokenize),
    },
    certificateTTL: canonicalDuration(spec.certificateTTL ?? DEFAULT_CERTIFICATE_TTL),
    validUntil: canonicalInstant(spec.validUntil),
    description: spec.description,
  };
}

/** Canonical JSON (steps 3 and 4). Exported for tests and for `erpguard hash --canonical`. */
export function canonicalJson(value: unknown): string {
  const pruned = prune(value);
  return pruned === undefined ? 'null' : serialise(pruned);
}

function prune(value: unknown): unknown {
  if (value === null || value === undefined || value === '') return undefined;
  if (Array.isArray(value)) {
    const items = value.map(prune).filter((item) => item !== undefined);
    return items.length === 0 ? undefined : items;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .map(([key, item]) => [key, prune(item)] as const)
      .filter(([, item]) => item !== undefined);
    return entries.length === 0 ? undefined : Object.fromEntries(entries);
  }
  return value;
}

function serialise(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(serialise).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    const record = value as Record<string, unknown>;
    return `{${keys.map((key) => `${JSON.stringify(key)}:${serialise(record[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** `sha256:<hex>` of the canonical spec. */
export function specHash(spec: ErpIntegrationPolicySpec): string {
  const digest = createHash('sha256')
    .update(canonicalJson(canonicalSpec(spec)), 'utf8')
    .digest('hex');
  return `sha256:${digest}`;
}
