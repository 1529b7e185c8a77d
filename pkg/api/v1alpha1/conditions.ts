/** Condition types and their stable reasons (CamelCase words, documented in docs/reference/codes.md). */

export const CONDITION_VERIFIED = 'Verified';
export const CONDITION_READY = 'Ready';

/** Reasons of the Verified condition. */
export const VerifiedReason = {
  /** Lint clean, approval matches the spec hash, approver is a reviewer and not the author, not expired. */
  Approved: 'Approved',
  /** No approval recorded. */
  NotApproved: 'NotApproved',
  /** An approval exists but for another spec hash: the spec changed after approval. */
  ApprovalVoided: 'ApprovalVoided',
  /** validUntil has passed. */
  Expired: 'Expired',
  /** The least-privilege lint reports errors. */
  LintFailed: 'LintFailed',
  /** The approver is the last author of the spec. */
  SelfApproval: 'SelfApproval',
  /** The approver is in none of the configured reviewer groups. */
  ApproverNotReviewer: 'ApproverNotReviewer',
  /** The spec does not pass semantic validation. */
  InvalidSpec: 'InvalidSpec',
  /** No last author is recorded (`erpguard.io/last-author`), so self-approval cannot be ruled out. */
  LastAuthorUnknown: 'LastAuthorUnknown',
  /** The approval record is not credible (e.g. dated in the future). */
  ApprovalInvalid: 'ApprovalInvalid',
} as const;
export type VerifiedReason = (typeof VerifiedReason)[keyof typeof VerifiedReason];

/** Reasons of the Ready condition (controller: published to sidecars). */
export const ReadyReason = {
  /** Verified and published to the sidecars of the destination module. */
  Ready: 'Ready',
  /** Not enforced because the Verified condition is False (its reason says why). */
  NotVerified: 'NotVerified',
  /** Verified, but not yet published to the sidecars. */
  Pending: 'Pending',
} as const;
export type ReadyReason = (typeof ReadyReason)[keyof typeof ReadyReason];
