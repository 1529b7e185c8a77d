/**
 * Identity-service failures: a project ErrorCode (mapped to a gRPC status) plus a finer stable
 * reason, used as a metric label, in logs, and sent to clients in the `erpguard-reason` trailer.
 */
import * as grpc from '@grpc/grpc-js';

import { CaError } from '../ca/errors.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';

export const IdentityReason = {
  /** A certificate was issued. */
  Issued: 'Issued',
  /** Neither a bearer token nor a client certificate from this CA was presented. */
  NoCredentials: 'NoCredentials',
  /** The `authorization` metadata is not `Bearer <token>`. */
  MalformedAuthorization: 'MalformedAuthorization',
  /** The authenticator does not know the token. */
  TokenInvalid: 'TokenInvalid',
  /** The authenticator refused the token for a stated reason (expired, wrong audience). */
  TokenRejected: 'TokenRejected',
  /** The authenticator could not decide (API server down); retry. */
  AuthenticatorUnavailable: 'AuthenticatorUnavailable',
  /** The client certificate verified but does not carry exactly one SPIFFE ID of this domain. */
  PeerIdentityInvalid: 'PeerIdentityInvalid',
  /** The caller's identity is revoked. */
  IdentityRevoked: 'IdentityRevoked',
  /** The per-identity signing rate was exceeded. */
  RateLimited: 'RateLimited',
  /** Too many signing requests in flight on the server. */
  ServerBusy: 'ServerBusy',
  /** No module is bound to the caller's ServiceAccount. */
  ModuleUnbound: 'ModuleUnbound',
  /** The caller asked for another module's or namespace's policies. */
  ModuleMismatch: 'ModuleMismatch',
  /** Too many open policy streams for one identity. */
  TooManyStreams: 'TooManyStreams',
  /** An admin operation by a non-admin identity. */
  NotAdmin: 'NotAdmin',
  /** A request field is malformed (SPIFFE ID, time). */
  InvalidRequest: 'InvalidRequest',
  /** The server is shutting down; reconnect elsewhere or later. */
  ShuttingDown: 'ShuttingDown',
  /** A bug. */
  Internal: 'Internal',
} as const;
export type IdentityReason = (typeof IdentityReason)[keyof typeof IdentityReason];

export const REASON_METADATA_KEY = 'erpguard-reason';

export class IdentityError extends ErpguardError {
  readonly reason: string;

  constructor(
    code: ErrorCode,
    reason: IdentityReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'IdentityError';
    this.reason = reason;
  }
}

const STATUS: Partial<Record<ErrorCode, grpc.status>> = {
  [ErrorCode.Unauthenticated]: grpc.status.UNAUTHENTICATED,
  [ErrorCode.PermissionDenied]: grpc.status.PERMISSION_DENIED,
  [ErrorCode.InvalidCsr]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.InvalidArgument]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.InputTooLarge]: grpc.status.INVALID_ARGUMENT,
  [ErrorCode.RateLimited]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCode.Unavailable]: grpc.status.UNAVAILABLE,
};

/** Authentication failures get one generic message: the client learns nothing about tokens. */
const GENERIC: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.Unauthenticated]: 'Unauthenticated: credentials not accepted',
  [ErrorCode.Internal]: 'Internal: internal error',
};

export interface Failure {
  status: Partial<grpc.StatusObject> & { code: grpc.status; details: string };
  reason: string;
  code: ErrorCode;
  /** Client's fault (refused) or ours (error): the metric's `result` label. */
  result: 'refused' | 'error';
  message: string;
}

/** Maps any thrown value to a short gRPC status; the full message stays in `message` for logs. */
export function toFailure(error: unknown): Failure {
  let code: ErrorCode = ErrorCode.Internal;
  let reason: string = IdentityReason.Internal;
  let message = error instanceof Error ? error.message : String(error);
  if (error instanceof IdentityError || error instanceof CaError) {
    code = error.code;
    reason = error.reason;
  } else if (error instanceof ErpguardError) {
    code = error.code;
    reason = error.code;
  }
  if (message.length > 300) message = `${message.slice(0, 300)}…`;
  const metadata = new grpc.Metadata();
  metadata.set(REASON_METADATA_KEY, reason);
  const grpcCode = STATUS[code] ?? grpc.status.INTERNAL;
  const details = GENERIC[code] ?? `${code}: ${message}`;
  const result =
    code === ErrorCode.Internal || code === ErrorCode.Unavailable ? 'error' : 'refused';
  return { status: { code: grpcCode, details, metadata }, reason, code, result, message };
}
