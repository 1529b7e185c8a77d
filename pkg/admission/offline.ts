/**
 * `erpguard admit`: runs a saved AdmissionReview through both handlers the way the API server
 * would (mutating first, then validating on the patched object) and reports both answers.
 */
import { ErpguardError, ErrorCode } from '../errors/errors.js';

import { mutateReview, validateReview } from './handlers.js';
import { parseAdmissionReview, reviewResponse } from './review.js';
import type { AdmissionResponse, AdmissionReview, AdmissionReviewResponse } from './review.js';
import type { AdmissionConfig, AdmissionResult, Snapshot } from './types.js';

export interface OfflineAdmission {
  /**
   * What the API server would conclude: allowed only if both webhooks allow; the mutation's
   * patch, the validation's status, the warnings of both.
   */
  response: AdmissionResponse;
  /** The review envelope of `response`, ready to print. */
  review: AdmissionReviewResponse;
  mutation: AdmissionResult;
  validation: AdmissionResult;
  /** The object after the mutating webhook's patch (absent when nothing was patched). */
  patchedObject?: Record<string, unknown>;
}

/**
 * Throws ErpguardError(InvalidDocument) naming the field when `reviewJson` is not an
 * admission.k8s.io/v1 AdmissionReview with a request.
 */
export function admitOffline(
  reviewJson: unknown,
  snapshot: Snapshot,
  config: AdmissionConfig,
): OfflineAdmission {
  const parsed = parseAdmissionReview(reviewJson);
  if (!parsed.ok) throw new ErpguardError(ErrorCode.InvalidDocument, parsed.message);
  const review = parsed.review;
  const mutation = mutateReview(review, snapshot, config);
  const patchedObject = mutation.patch !== undefined ? mutation.patchedObject : undefined;
  const afterMutation: AdmissionReview =
    patchedObject === undefined
      ? review
      : { ...review, request: { ...review.request, object: patchedObject } };
  const validation = mutation.response.allowed
    ? validateReview(afterMutation, snapshot, config)
    : mutation; // the API server stops at the first denial

  const response: AdmissionResponse = {
    uid: review.request.uid,
    allowed: mutation.response.allowed && validation.response.allowed,
  };
  const denial = !mutation.response.allowed ? mutation.response : validation.response;
  if (!response.allowed && denial.status !== undefined) response.status = denial.status;
  if (mutation.response.patch !== undefined) {
    response.patch = mutation.response.patch;
    response.patchType = 'JSONPatch';
  }
  const warnings = [
    ...(mutation.response.warnings ?? []),
    ...(validation === mutation ? [] : (validation.response.warnings ?? [])),
  ];
  if (warnings.length > 0) response.warnings = warnings;
  const out: OfflineAdmission = {
    response,
    review: reviewResponse(response),
    mutation,
    validation,
  };
  if (patchedObject !== undefined) out.patchedObject = patchedObject;
  return out;
}
