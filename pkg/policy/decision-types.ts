/**
 * The decision engine's contract. The sidecar, the CLI (`erpguard check`) and the demo depend on
 * these shapes; the engine itself lives in compile.ts / decide.ts.
 */
import type { DataProtection, PolicyMode, RateLimit } from '../api/v1alpha1/index.js';

/** Why a call was allowed or denied. Stable CamelCase codes, documented in docs/reference/codes.md. */
export const DecisionReason = {
  /** An Enforce-mode rule allows the call. */
  Allowed: 'Allowed',
  /**
   * No rule allows the call, but an Audit-mode policy covers this caller and destination: the call
   * goes through (audit never blocks) and is logged as a would-be denial (`wouldBe`).
   */
  AuditWouldDeny: 'AuditWouldDeny',
  /** No verified policy lets this caller reach this destination at all. */
  NoPolicy: 'NoPolicy',
  /** Policies exist for this caller, but no rule matches method and path (or gRPC method). */
  NoMatchingRule: 'NoMatchingRule',
  /** The request target failed normalisation (encoded separator, dot segment, ...). */
  InvalidPath: 'InvalidPath',
  /** The method is not an upper-case token. */
  InvalidMethod: 'InvalidMethod',
  /** The gRPC path is not `/package.Service/Method`. */
  InvalidGrpcPath: 'InvalidGrpcPath',
} as const;
export type DecisionReason = (typeof DecisionReason)[keyof typeof DecisionReason];

/** Sub-codes for InvalidPath, so the audit log says exactly what was wrong. */
export const PathRejection = {
  /** The target does not start with `/` (absolute-form and `*` are not accepted here). */
  NotAbsolute: 'NotAbsolute',
  /** The target is longer than the limit (default 2048 characters). */
  TooLong: 'TooLong',
  /** A `%` not followed by two hex digits, or bytes that are not valid UTF-8 once decoded. */
  BadPercentEncoding: 'BadPercentEncoding',
  /** An encoded `/`, `?` or `#` (`%2F`, `%3F`, `%23`): a second decoder would split differently. */
  EncodedSeparator: 'EncodedSeparator',
  /** An encoded `.` (`%2E`): a way to smuggle dot segments past a matcher. */
  EncodedDot: 'EncodedDot',
  /** NUL or another control character, raw or encoded. */
  ControlCharacter: 'ControlCharacter',
  /** A `.` or `..` segment (or one made only of dots). */
  DotSegment: 'DotSegment',
  /** An empty segment: `//`, or a trailing `/`. */
  EmptySegment: 'EmptySegment',
  /** A `;` path parameter (raw or `%3B`), which some servers strip before routing. */
  PathParameter: 'PathParameter',
  /** A backslash, raw or encoded (`%5C`), which some servers treat as `/`. */
  Backslash: 'Backslash',
  /** A raw character that RFC 3986 does not allow in a path (space, `"`, `<`, `{`, non-ASCII, ...). */
  InvalidCharacter: 'InvalidCharacter',
  /** `%25` followed by two hex digits (`%252F`): a second decoding would produce another escape. */
  DoubleEncoding: 'DoubleEncoding',
} as const;
export type PathRejection = (typeof PathRejection)[keyof typeof PathRejection];

/** A reference to the policy and rule that matched. */
export interface RuleRef {
  /** `namespace/name` of the policy. */
  policy: string;
  /** Index into `spec.rules`. */
  ruleIndex: number;
  mode: PolicyMode;
}

export interface HttpCall {
  kind: 'http';
  /** Module of the authenticated caller (resolved from its SPIFFE ID before the engine runs). */
  callerModule: string;
  /** Namespace of the caller's identity. */
  callerNamespace: string;
  method: string;
  /** Raw request target as received: path, optional query and fragment. */
  target: string;
}

export interface GrpcCall {
  kind: 'grpc';
  callerModule: string;
  callerNamespace: string;
  /** `/package.Service/Method`. */
  path: string;
}

export type Call = HttpCall | GrpcCall;

export interface Decision {
  allowed: boolean;
  reason: DecisionReason;
  /** For AuditWouldDeny: the reason an Enforce-mode policy would have denied with. */
  wouldBe?: DecisionReason;
  /** For InvalidPath: what exactly was rejected. */
  pathRejection?: PathRejection;
  /** The normalised path (HTTP) or `/svc/Method` (gRPC) that was matched, when normalisation succeeded. */
  normalizedPath?: string;
  /** The rule that allowed the call (Enforce or Audit mode; see `matched.mode`). */
  matched?: RuleRef;
  /** The path template (`/api/v1/customers/{id}`) or gRPC pattern (`svc/Method`, `svc/*`) that matched. */
  matchedTemplate?: string;
  /** Rate limit of the matched policy. */
  rateLimit?: RateLimit;
  /** Data protection of the matched policy (masks and tokenization apply to the response). */
  dataProtection?: DataProtection;
  /** Human-readable explanation for logs and the CLI. */
  message: string;
}
