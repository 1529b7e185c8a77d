/**
 * Errors with stable codes. Codes are CamelCase words, listed in docs/reference/codes.md (a test
 * checks that every code here is documented). `retryable` separates transient failures (requeue,
 * retry with backoff) from terminal ones (report and stop).
 */

export const ErrorCode = {
  /** A file could not be read or is not a regular file. */
  FileUnreadable: 'FileUnreadable',
  /** A file or input is larger than the configured limit. */
  InputTooLarge: 'InputTooLarge',
  /** YAML or JSON could not be parsed. */
  ParseError: 'ParseError',
  /** A document is not an ErpIntegrationPolicy or has the wrong shape. */
  InvalidDocument: 'InvalidDocument',
  /** Too many documents or items in one input. */
  TooManyItems: 'TooManyItems',
  /** A command-line argument is missing or malformed. */
  InvalidArgument: 'InvalidArgument',
  /** A configuration file or value is invalid. */
  InvalidConfig: 'InvalidConfig',
  /** A certificate signing request is malformed, weak, or asks for another identity. */
  InvalidCsr: 'InvalidCsr',
  /** The caller could not be authenticated. */
  Unauthenticated: 'Unauthenticated',
  /** The caller is authenticated but not allowed. */
  PermissionDenied: 'PermissionDenied',
  /** A per-identity limit was exceeded. */
  RateLimited: 'RateLimited',
  /** A dependency (API server, controller) is unavailable; retry later. */
  Unavailable: 'Unavailable',
  /** A bug: an invariant did not hold. */
  Internal: 'Internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([ErrorCode.Unavailable]);

export class ErpguardError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ErpguardError';
    this.code = code;
    this.retryable = RETRYABLE.has(code);
  }
}

export function isErpguardError(value: unknown): value is ErpguardError {
  return value instanceof ErpguardError;
}

/** One line for a user: `Code: message`. */
export function describeError(error: unknown): string {
  if (error instanceof ErpguardError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${ErrorCode.Internal}: ${error.message}`;
  return `${ErrorCode.Internal}: ${String(error)}`;
}
