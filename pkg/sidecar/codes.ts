/**
 * Stable codes the sidecar puts in error bodies (`{code, reason, policy}`), audit records and the
 * `reason` metric label, besides the decision engine's DecisionReason codes (NoPolicy,
 * NoMatchingRule, InvalidPath, ...). Documented in docs/sidecar.md.
 */
export const SidecarCode = {
  /** No policy snapshot has been received yet: every call is denied (503). */
  NoPolicySnapshot: 'NoPolicySnapshot',
  /** The peer certificate does not carry exactly one SPIFFE URI SAN of the trust domain (403). */
  InvalidPeerIdentity: 'InvalidPeerIdentity',
  /** The peer certificate is expired or not yet valid (403). */
  PeerCertificateNotValid: 'PeerCertificateNotValid',
  /** The peer identity is revoked by the policy snapshot (403). */
  IdentityRevoked: 'IdentityRevoked',
  /** The identity resolver knows no module for the peer identity (403). */
  UnknownCaller: 'UnknownCaller',
  /** The caller exceeded the policy's rate limit (429, gRPC RESOURCE_EXHAUSTED). */
  RateLimited: 'RateLimited',
  /** Masks apply but the response is not JSON, not parsable, or in an unknown encoding (502). */
  ResponseNotMaskable: 'ResponseNotMaskable',
  /** Masks apply and the response body is larger than the masking limit (502). */
  ResponseTooLarge: 'ResponseTooLarge',
  /** The request body is larger than the configured limit (413). */
  RequestTooLarge: 'RequestTooLarge',
  /** Too many request header fields (431). */
  RequestHeadersTooLarge: 'RequestHeadersTooLarge',
  /** The request is malformed (400). */
  BadRequest: 'BadRequest',
  /** The app (inbound) or the destination sidecar (outbound) could not be reached (503). */
  UpstreamUnavailable: 'UpstreamUnavailable',
  /** The app or destination did not answer in time (504). */
  UpstreamTimeout: 'UpstreamTimeout',
  /** The destination sidecar presented an identity its module may not have (502). */
  UpstreamIdentityMismatch: 'UpstreamIdentityMismatch',
  /** The audit sink failed or its queue is full: calls are refused rather than served unaudited (503). */
  AuditUnavailable: 'AuditUnavailable',
  /** This workload has no (valid) certificate yet (503). */
  NoWorkloadCertificate: 'NoWorkloadCertificate',
  /** Outbound: the host names no module and is not in the egress allow-list (403). */
  DestinationNotAllowed: 'DestinationNotAllowed',
  /** Outbound: CONNECT to a destination that is not in the egress allow-list (403). */
  ConnectNotAllowed: 'ConnectNotAllowed',
  /** Outbound: the call was sent over mTLS to the destination's inbound sidecar, which decides. */
  Forwarded: 'Forwarded',
  /** Outbound: egress to an allow-listed host (allowed, audited). */
  EgressAllowed: 'EgressAllowed',
  /** The sidecar is shutting down (503). */
  ShuttingDown: 'ShuttingDown',
  /** An invariant did not hold (500). */
  Internal: 'Internal',
} as const;
export type SidecarCode = (typeof SidecarCode)[keyof typeof SidecarCode];

/** gRPC status codes used by the sidecar (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** The gRPC status a sidecar HTTP status maps to (for trailers-only gRPC error responses). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GrpcStatus.INVALID_ARGUMENT;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 413:
    case 429:
    case 431:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 503:
      return GrpcStatus.UNAVAILABLE;
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    default:
      return GrpcStatus.INTERNAL;
  }
}
