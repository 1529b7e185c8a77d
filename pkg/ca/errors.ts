/**
 * CA failures. Each carries a project-wide ErrorCode (InvalidCsr, InvalidConfig, ...) plus a finer
 * stable `reason` used as the metric label and in logs; clients only see a short message.
 */
import { ErpguardError, type ErrorCode } from '../errors/errors.js';

export const CaReason = {
  /** The CSR is larger than the configured limit. */
  CsrTooLarge: 'CsrTooLarge',
  /** The CSR is not one PEM "CERTIFICATE REQUEST" block holding a well-formed PKCS#10 structure. */
  CsrMalformed: 'CsrMalformed',
  /** The CSR's self-signature does not verify against its own public key. */
  CsrSignatureInvalid: 'CsrSignatureInvalid',
  /** The key is of an accepted type but too weak (RSA below 2048 bits, small exponent). */
  CsrWeakKey: 'CsrWeakKey',
  /** Key type or curve not accepted (only RSA 2048..8192 and EC P-256 / P-384). */
  CsrUnsupportedKey: 'CsrUnsupportedKey',
  /** Signature algorithm not accepted (SHA-1, RSASSA-PSS, unknown). */
  CsrUnsupportedSignatureAlgorithm: 'CsrUnsupportedSignatureAlgorithm',
  /** The CSR names a SPIFFE ID other than the authenticated caller's. */
  CsrIdentityMismatch: 'CsrIdentityMismatch',
  /** The CSR requests DNS, IP, e-mail or other names; identity comes only from the caller. */
  CsrUnsupportedSan: 'CsrUnsupportedSan',
  /** The CSR asks for a CA certificate (basicConstraints CA:true). */
  CsrRequestsCa: 'CsrRequestsCa',
  /** The CA's issuer certificate has expired or is not yet valid. */
  IssuerNotValid: 'IssuerNotValid',
  /** A trust anchor still anchors unexpired leaves or the active issuer and cannot be removed. */
  TrustAnchorInUse: 'TrustAnchorInUse',
  /** Stored or supplied CA material is unusable (key mismatch, not a CA, chain broken). */
  CaMaterialInvalid: 'CaMaterialInvalid',
} as const;
export type CaReason = (typeof CaReason)[keyof typeof CaReason];

export class CaError extends ErpguardError {
  readonly reason: CaReason;

  constructor(code: ErrorCode, reason: CaReason, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CaError';
    this.reason = reason;
  }
}

export function isCaError(value: unknown): value is CaError {
  return value instanceof CaError;
}
