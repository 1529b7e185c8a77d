/**
 * The per-call decision (DESIGN.md §4.5). Default deny; in order:
 *
 *  1. HTTP method not an upper-case RFC 9110 token → InvalidMethod (denied).
 *  2. Target fails normalize-path.ts → InvalidPath with `pathRejection` (denied, also for callers
 *     that only have Audit-mode policies: a malformed target is never forwarded).
 *     gRPC path not `/package.Service/Method` → InvalidGrpcPath (denied).
 *  3. No policy of this caller (module + namespace) for this destination → NoPolicy.
 *  4. An Enforce-mode rule matches → Allowed, with `matched`, the rule's rate limit and data protection.
 *  5. An Audit-mode rule matches → Allowed with `matched.mode = 'Audit'` (its rate limit and data
 *     protection are reported too; the sidecar logs instead of rejecting over the limit).
 *  6. The caller has an Audit-mode policy → AuditWouldDeny: allowed (audit never blocks),
 *     `wouldBe: NoMatchingRule`.
 *  7. Otherwise → NoMatchingRule.
 *
 * Methods match exactly: HEAD is not implied by GET and `*` in a policy means the methods of
 * HTTP_METHODS, so a reviewer sees exactly which methods a rule allows. The query string is never
 * used for matching. Cost: one normalisation pass, three map look-ups for the caller, then per path
 * segment one look-up of its id and one state record of the determinised table (compile.ts); the
 * number of rules does not enter.
 */
import {
  DecisionReason,
  type Call,
  type Decision,
  type GrpcCall,
  type HttpCall,
} from './decision-types.js';
import {
  REC_EXACT,
  REC_HEADER,
  REC_OTHER,
  REC_REST,
  REC_TRANS,
  type Candidate,
  type CompiledCaller,
  type CompiledPolicySet,
  type HttpMatcher,
} from './compile.js';
import { isValidMethodToken, normalizeRequestTarget } from './normalize-path.js';

/** `/package.Service/Method`: the service may be dotted; both parts are identifiers. */
const GRPC_PATH =
  /^\/([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\/([A-Za-z_][A-Za-z0-9_]*)$/;
const MAX_GRPC_PATH_LENGTH = 512;

/** Decides one call to `destinationModule`. Pure, total (never throws on string input), O(path length). */
export function decide(
  compiled: CompiledPolicySet,
  destinationModule: string,
  call: Call,
): Decision {
  return call.kind === 'grpc'
    ? decideGrpc(compiled, destinationModule, call)
    : decideHttp(compiled, destinationModule, call);
}

function decideHttp(compiled: CompiledPolicySet, destination: string, call: HttpCall): Decision {
  const method = call.method;
  if (!isValidMethodToken(method)) {
    return {
      allowed: false,
      reason: DecisionReason.InvalidMethod,
      message: `method ${quote(method)} is not an upper-case RFC 9110 token (methods are case-sensitive)`,
    };
  }
  const target = normalizeRequestTarget(call.target, compiled.limits);
  if (!target.ok) {
    return {
      allowed: false,
      reason: DecisionReason.InvalidPath,
      pathRejection: target.rejection,
      message: `request target rejected (${target.rejection}): ${target.message}`,
    };
  }
  const path = target.path;
  const caller = findCaller(compiled, destination, call);
  if (caller === undefined) return noPolicy(call, destination, path);
  // A method no rule names cannot match; it still gets the caller's NoMatchingRule/AuditWouldDeny.
  const m = compiled.methodIds.get(method);
  if (m !== undefined) {
    const enforce = caller.enforce?.http;
    const c =
      (enforce && matchHttp(compiled, enforce, target.segments, m)) ??
      (caller.audit?.http && matchHttp(compiled, caller.audit.http, target.segments, m));
    if (c) return allow(c, path);
  }
  return noMatch(caller, `${method} ${path}`, path);
}

function decideGrpc(compiled: CompiledPolicySet, destination: string, call: GrpcCall): Decision {
  const path = call.path;
  const m =
    typeof path === 'string' && path.length <= MAX_GRPC_PATH_LENGTH ? GRPC_PATH.exec(path) : null;
  const service = m?.[1];
  if (m === null || service === undefined) {
    return {
      allowed: false,
      reason: DecisionReason.InvalidGrpcPath,
      message: `gRPC path ${quote(path)} is not '/package.Service/Method'`,
    };
  }
  const caller = findCaller(compiled, destination, call);
  if (caller === undefined) return noPolicy(call, destination, path);
  const key = path.slice(1);
  for (const table of [caller.enforce, caller.audit]) {
    if (table === null) continue;
    const c = table.grpcExact?.get(key) ?? table.grpcService?.get(service);
    if (c !== undefined) return allow(c, path);
  }
  return noMatch(caller, `grpc ${path}`, path);
}

function findCaller(
  compiled: CompiledPolicySet,
  destination: string,
  call: Call,
): CompiledCaller | undefined {
  return compiled.destinations
    .get(destination)
    ?.callers.get(call.callerModule)
    ?.get(call.callerNamespace);
}

/**
 * Best candidate of the matcher for (segments, method id), or undefined. Determinised: one state
 * record per segment. Trie form: all live branches at once. Record layout: compile.ts HttpMatcher.
 */
export function matchHttp(
  compiled: CompiledPolicySet,
  matcher: HttpMatcher,
  segments: readonly string[],
  method: number,
): Candidate | undefined {
  const best = matcher.deterministic
    ? walkDeterministic(compiled.httpArena, compiled.segmentIds, matcher.root, segments, method)
    : walkTrie(compiled.httpArena, compiled.segmentIds, matcher.root, segments, method);
  return best < 0 ? undefined : compiled.candidates[best];
}

/** Target of state `s` on segment id `id`, or -1. Pairs are sorted by id: scan short runs, bisect long ones. */
function transition(a: Int32Array, s: number, id: number): number {
  const n = a[s + REC_TRANS] as number;
  const base = s + REC_HEADER;
  if (n <= 8) {
    for (let k = base, end = base + 2 * n; k < end; k += 2) {
      if (a[k] === id) return a[k + 1] as number;
    }
    return -1;
  }
  let lo = 0;
  let hi = n - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = a[base + 2 * mid] as number;
    if (v === id) return a[base + 2 * mid + 1] as number;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Candidate for `method` among the (method, candidate) pairs of state `s`, or -1. */
function terminal(a: Int32Array, s: number, method: number, rest: boolean): number {
  const nTrans = a[s + REC_TRANS] as number;
  const nExact = a[s + REC_EXACT] as number;
  let k = s + REC_HEADER + 2 * nTrans;
  let end: number;
  if (rest) {
    k += 2 * nExact;
    end = k + 2 * (a[s + REC_REST] as number);
  } else {
    end = k + 2 * nExact;
  }
  for (; k < end; k += 2) if (a[k] === method) return a[k + 1] as number;
  return -1;
}

function walkDeterministic(
  a: Int32Array,
  segmentIds: ReadonlyMap<string, number>,
  root: number,
  segments: readonly string[],
  method: number,
): number {
  let s = root;
  let best = a[s + REC_REST] === 0 ? -1 : terminal(a, s, method, true);
  const n = segments.length;
  for (let i = 0; i < n; i++) {
    const id = segmentIds.get(segments[i] as string);
    let next = id === undefined ? -1 : transition(a, s, id);
    if (next < 0) next = a[s + REC_OTHER] as number;
    if (next < 0) return best;
    s = next;
    if (a[s + REC_REST] !== 0) {
      const r = terminal(a, s, method, true);
      if (r >= 0 && (best < 0 || r < best)) best = r;
    }
  }
  if (a[s + REC_EXACT] === 0) return best;
  const e = terminal(a, s, method, false);
  return e >= 0 && (best < 0 || e < best) ? e : best;
}

function walkTrie(
  a: Int32Array,
  segmentIds: ReadonlyMap<string, number>,
  root: number,
  segments: readonly string[],
  method: number,
): number {
  const pick = (best: number, c: number): number => (c >= 0 && (best < 0 || c < best) ? c : best);
  let live = [root];
  let best = terminal(a, root, method, true);
  for (const seg of segments) {
    const id = segmentIds.get(seg);
    const next: number[] = [];
    for (const s of live) {
      const t = id === undefined ? -1 : transition(a, s, id);
      if (t >= 0) next.push(t);
      const o = a[s + REC_OTHER] as number;
      if (o >= 0) next.push(o);
    }
    if (next.length === 0) return best;
    for (const s of next) best = pick(best, terminal(a, s, method, true));
    live = next;
  }
  for (const s of live) best = pick(best, terminal(a, s, method, false));
  return best;
}

function allow(c: Candidate, normalizedPath: string): Decision {
  const d: Decision = {
    allowed: true,
    reason: DecisionReason.Allowed,
    normalizedPath,
    matched: c.ref,
    matchedTemplate: c.template,
    message: c.message,
  };
  if (c.rateLimit !== undefined) d.rateLimit = c.rateLimit;
  if (c.dataProtection !== undefined) d.dataProtection = c.dataProtection;
  return d;
}

function noPolicy(call: Call, destination: string, normalizedPath: string): Decision {
  return {
    allowed: false,
    reason: DecisionReason.NoPolicy,
    normalizedPath,
    message: `no verified policy lets ${quote(call.callerModule)} (namespace ${quote(call.callerNamespace)}) call ${quote(destination)}`,
  };
}

function noMatch(caller: CompiledCaller, what: string, normalizedPath: string): Decision {
  if (caller.auditPolicies.length > 0) {
    return {
      allowed: true,
      reason: DecisionReason.AuditWouldDeny,
      wouldBe: DecisionReason.NoMatchingRule,
      normalizedPath,
      message: `no rule of ${caller.allLabel} allows ${what}; allowed only because ${caller.auditLabel} ${caller.auditPolicies.length === 1 ? 'is' : 'are'} in Audit mode`,
    };
  }
  return {
    allowed: false,
    reason: DecisionReason.NoMatchingRule,
    normalizedPath,
    message: `no rule of ${caller.enforceLabel} allows ${what}`,
  };
}

/** Quotes caller-supplied text for a message: bounded, with control characters escaped. */
function quote(value: unknown): string {
  if (typeof value !== 'string') return `<${value === null ? 'null' : typeof value}>`;
  if (value.length <= 64 && isPlain(value)) return `"${value}"`; // the common case, no escaping
  const short = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return JSON.stringify(short);
}

/** Printable ASCII without a double quote or a backslash. */
function isPlain(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}
