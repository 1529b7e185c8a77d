/**
 * API errors from @kubernetes/client-node mapped onto erpguard's coded errors, so callers outside
 * pkg/kube never see client-node types. The retryable flag follows the HTTP status: overload,
 * server errors, timeouts, conflicts and network failures are worth retrying; a rejected object or
 * missing permission is not (until someone changes the object or the RBAC rules).
 */
import { ErpguardError, ErrorCode } from '../errors/errors.js';

interface ApiErrorShape {
  code?: unknown;
  statusCode?: unknown;
  body?: unknown;
}

/** HTTP status of a client-node error (ApiException.code, or statusCode from the watch), if any. */
export function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as ApiErrorShape;
  if (typeof e.code === 'number' && e.code >= 100 && e.code < 600) return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

export const isNotFound = (error: unknown): boolean => httpStatusOf(error) === 404;
export const isConflict = (error: unknown): boolean => httpStatusOf(error) === 409;

/** The `message` of a Kubernetes Status body, when the error carries one. */
function statusMessage(error: unknown): string | undefined {
  const body = (error as ApiErrorShape | null)?.body;
  const parsed: unknown =
    typeof body === 'string'
      ? (() => {
          try {
            return JSON.parse(body) as unknown;
          } catch {
            return undefined;
          }
        })()
      : body;
  if (typeof parsed === 'object' && parsed !== null) {
    const message = (parsed as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return message;
  }
  return undefined;
}

function codeFor(status: number | undefined): ErrorCode {
  if (status === undefined) return ErrorCode.Unavailable; // no HTTP answer: network, TLS, DNS
  if (status === 401) return ErrorCode.Unauthenticated;
  if (status === 403) return ErrorCode.PermissionDenied;
  if (status === 400 || status === 404 || status === 422) return ErrorCode.InvalidDocument;
  if (status === 413) return ErrorCode.InputTooLarge;
  // 408, 409 (optimistic concurrency), 429, 5xx: transient.
  return ErrorCode.Unavailable;
}

/**
 * Wraps any error of an API call as an ErpguardError whose message says what was attempted and
 * what the API server answered. An ErpguardError passes through unchanged.
 */
export function kubeError(what: string, error: unknown): ErpguardError {
  if (error instanceof ErpguardError) return error;
  const status = httpStatusOf(error);
  const detail = statusMessage(error) ?? (error instanceof Error ? error.message : String(error));
  const prefix = status === undefined ? '' : `HTTP ${status}: `;
  return new ErpguardError(codeFor(status), `${what}: ${prefix}${detail}`, { cause: error });
}
