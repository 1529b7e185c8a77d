/**
 * Header hygiene between the caller, the sidecar and the app.
 *
 * Removed from requests before they reach the app: hop-by-hop headers (RFC 9110 §7.6.1, plus those
 * the Connection header names), HTTP/2 pseudo-headers, `expect`, and every header an app might read
 * as an identity or client address set by a trusted proxy: `x-erpguard-*`, `forwarded`,
 * `x-forwarded-*`, `x-forwarded-client-cert`, `x-client-cert*`, `x-ssl-*`, `ssl-client-*`,
 * `x-spiffe-*`, `x-real-ip`, `x-client-ip`, `x-cluster-client-ip`, `true-client-ip`,
 * `cf-connecting-ip`, `x-remote-user`, `x-remote-group`, `x-auth-request-*`, `x-authenticated-*`.
 * Only the inbound sidecar then adds `x-erpguard-caller`, `x-erpguard-caller-module`,
 * `x-erpguard-policy` and `x-erpguard-request-id`.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'http2-settings',
  'host',
]);

const IDENTITY_EXACT = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'x-remote-user',
  'x-remote-group',
]);

const IDENTITY_PREFIXES = [
  'x-erpguard-',
  'x-forwarded-',
  'x-client-cert',
  'x-ssl-',
  'ssl-client-',
  'x-spiffe',
  'x-auth-request-',
  'x-authenticated-',
];

/** True for a header a caller may not pass to the app (identity or client-address claims). */
export function isIdentityHeader(name: string): boolean {
  if (IDENTITY_EXACT.has(name)) return true;
  const c = name.charCodeAt(0);
  // Fast path: every prefix starts with `x` or `s`.
  if (c !== 0x78 && c !== 0x73) return false;
  for (const p of IDENTITY_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  const out = new Set<string>();
  for (const t of text.split(',')) {
    const token = t.trim().toLowerCase();
    if (token !== '') out.add(token);
  }
  return out.size === 0 ? undefined : out;
}

/**
 * Request headers to forward: incoming minus hop-by-hop, pseudo and identity headers, plus `add`.
 * `host` is re-added from `host` / `:authority`. `keepTe`: pass `te: trailers` (gRPC needs it).
 */
export function forwardRequestHeaders(
  incoming: IncomingHttpHeaders,
  add: Readonly<Record<string, string>>,
  keepTe = false,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionTokens(incoming['connection']);
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (name.charCodeAt(0) === 0x3a /* ':' */) continue;
    if (HOP_BY_HOP.has(name)) continue;
    if (named?.has(name) === true) continue;
    if (isIdentityHeader(name)) continue;
    out[name] = value;
  }
  const host = incoming['host'] ?? (incoming as Record<string, string | undefined>)[':authority'];
  if (host !== undefined) out['host'] = host;
  if (keepTe && incoming['te'] === 'trailers') out['te'] = 'trailers';
  for (const name in add) out[name] = add[name] as string;
  return out;
}

/** Response headers to pass back: minus hop-by-hop (never valid on HTTP/2) and pseudo-headers. */
export function forwardResponseHeaders(
  incoming: Readonly<Record<string, string | string[] | undefined>>,
  drop?: ReadonlySet<string>,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const named = connectionTokens(incoming['connection']);
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (name.charCodeAt(0) === 0x3a) continue;
    if (HOP_BY_HOP.has(name) && name !== 'host') continue;
    if (named?.has(name) === true) continue;
    if (drop?.has(name) === true) continue;
    out[name] = value;
  }
  return out;
}

/** Headers that describe the original body and are wrong after masking. */
export const BODY_DESCRIBING_HEADERS: ReadonlySet<string> = new Set([
  'content-length',
  'content-encoding',
  'etag',
  'content-md5',
  'digest',
  'repr-digest',
  'content-digest',
  'accept-ranges',
]);

/** `application/grpc`, `application/grpc+proto` (not grpc-web, which is HTTP/1-compatible). */
export function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined || !value.startsWith('application/grpc')) return false;
  const next = value.charCodeAt(16);
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b; /* ; */
}
