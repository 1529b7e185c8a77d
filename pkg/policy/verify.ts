/**
 * Verification: the one pure function that decides whether a policy may gate deployments and be
 * enforced. The controller writes its result as the Verified condition, the webhook consults it
 * for the deployment gate, and the CLI prints it, so all three always agree.
 *
 * The checks run in a fixed order and the first failure is the reason (cert-manager's policy
 * chain): InvalidSpec, Expired, LintFailed, NotApproved, ApprovalVoided, ApprovalInvalid,
 * LastAuthorUnknown, SelfApproval, ApproverNotReviewer; otherwise Approved.
 */
import {
  ANNOTATION_APPROVAL,
  ANNOTATION_LAST_AUTHOR,
  CONDITION_VERIFIED,
  VerifiedReason,
} from '../api/v1alpha1/index.js';
import type { Approval, ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { specHash } from './hash.js';
import { lintPolicy, LintCode } from './lint.js';
import type { LintFinding, LintOptions } from './lint.js';
import { parseApprovalAnnotation, validatePolicyDocument } from './validate.js';

/** Who may approve: members of any of these groups, or these users. */
export interface ReviewerConfig {
  groups: string[];
  users?: string[];
}

export interface VerifiedCondition {
  type: typeof CONDITION_VERIFIED;
  status: 'True' | 'False';
  reason: VerifiedReason;
  message: string;
}

export interface VerificationResult {
  verified: boolean;
  condition: VerifiedCondition;
  /** Hash of the current spec (empty when the spec is invalid). */
  specHash: string;
  /** The approval that was considered, if any could be read. */
  approval?: Approval;
  /** Lint findings (errors and warnings) of the current spec. */
  findings: LintFinding[];
}

export interface VerifyOptions extends Partial<Omit<LintOptions, 'now'>> {
  /**
   * The approval to judge. Default: parsed from the `erpguard.io/approval` annotation. `null`
   * means "no approval" regardless of annotations.
   */
  approval?: Approval | null;
  /** The spec's last author. Default: the `erpguard.io/last-author` annotation. */
  lastAuthor?: string;
}

/** Approvals dated further ahead than this are refused (clock skew between machines). */
const APPROVAL_CLOCK_SKEW_MS = 5 * 60_000;

/** User names compared the way identity providers treat them: trimmed, case-insensitive. */
const sameUser = (a: string, b: string): boolean =>
  a.trim().toLowerCase() === b.trim().toLowerCase();

const shortHash = (hash: string): string => hash.replace(/^sha256:/, '').slice(0, 12);

function fail(
  reason: VerifiedReason,
  message: string,
  rest: Omit<VerificationResult, 'verified' | 'condition'>,
): VerificationResult {
  return {
    verified: false,
    condition: { type: CONDITION_VERIFIED, status: 'False', reason, message },
    ...rest,
  };
}

function approvalOf(policy: ErpIntegrationPolicy, options: VerifyOptions): Approval | undefined {
  if (options.approval === null) return undefined;
  if (options.approval !== undefined) return options.approval;
  const text = policy.metadata.annotations?.[ANNOTATION_APPROVAL];
  return text === undefined ? undefined : parseApprovalAnnotation(text).approval;
}

export function isReviewer(
  approval: Pick<Approval, 'by' | 'groups'>,
  reviewers: ReviewerConfig,
): boolean {
  if (reviewers.users?.includes(approval.by)) return true;
  return (approval.groups ?? []).some((group) => reviewers.groups.includes(group));
}

export function verifyPolicy(
  policy: ErpIntegrationPolicy,
  reviewers: ReviewerConfig,
  now: Date,
  options: VerifyOptions = {},
): VerificationResult {
  const validation = validatePolicyDocument(policy);
  if (validation.errors.length > 0) {
    const first = validation.errors[0]?.message ?? 'invalid spec';
    const more = validation.errors.length > 1 ? ` (and ${validation.errors.length - 1} more)` : '';
    return fail(VerifiedReason.InvalidSpec, `the spec is invalid: ${first}${more}`, {
      specHash: '',
      findings: [],
    });
  }
  const hash = specHash(policy.spec);
  const findings = lintPolicy(policy, { ...options, now });
  const approval = approvalOf(policy, options);
  const rest = { specHash: hash, findings, ...(approval ? { approval } : {}) };

  const until = policy.spec.validUntil;
  if (until !== undefined && Date.parse(until) <= now.getTime()) {
    return fail(
      VerifiedReason.Expired,
      `validUntil ${until} has passed: review the policy again, set a new validUntil and re-approve`,
      rest,
    );
  }
  // Expiry has its own reason above; every other lint error blocks as LintFailed.
  const errors = findings.filter(
    (f) => f.severity === 'error' && f.code !== LintCode.ValidUntilPassed,
  );
  if (errors.length > 0) {
    const list = errors.map((f) => `${f.code} at ${f.field}`).join(', ');
    return fail(VerifiedReason.LintFailed, `least-privilege lint failed: ${list}`, rest);
  }
  if (!approval) {
    return fail(
      VerifiedReason.NotApproved,
      `not approved: a reviewer must approve spec ${shortHash(hash)} (erpguard approve ${policy.metadata.name})`,
      rest,
    );
  }
  if (approval.specHash !== hash) {
    return fail(
      VerifiedReason.ApprovalVoided,
      `approval by ${approval.by} at ${approval.at} was for spec ${shortHash(approval.specHash)}, but the spec is now ${shortHash(hash)}: it changed after approval and must be approved again`,
      rest,
    );
  }
  if (Date.parse(approval.at) > now.getTime() + APPROVAL_CLOCK_SKEW_MS) {
    return fail(
      VerifiedReason.ApprovalInvalid,
      `approval by ${approval.by} is dated ${approval.at}, in the future: it cannot be trusted`,
      rest,
    );
  }
  const lastAuthor = options.lastAuthor ?? policy.metadata.annotations?.[ANNOTATION_LAST_AUTHOR];
  if (lastAuthor === undefined || lastAuthor.trim() === '') {
    return fail(
      VerifiedReason.LastAuthorUnknown,
      `no last author is recorded (${ANNOTATION_LAST_AUTHOR}), so self-approval cannot be ruled out`,
      rest,
    );
  }
  if (sameUser(lastAuthor, approval.by)) {
    return fail(
      VerifiedReason.SelfApproval,
      `${approval.by} approved a spec they last edited; another reviewer must approve it`,
      rest,
    );
  }
  if (!isReviewer(approval, reviewers)) {
    const allowed =
      reviewers.groups.length > 0
        ? `groups ${reviewers.groups.join(', ')}`
        : 'no reviewer groups are configured';
    return fail(
      VerifiedReason.ApproverNotReviewer,
      `approver ${approval.by} is not a reviewer (${allowed})`,
      rest,
    );
  }
  return {
    verified: true,
    condition: {
      type: CONDITION_VERIFIED,
      status: 'True',
      reason: VerifiedReason.Approved,
      message: `approved by ${approval.by} at ${approval.at}; valid until ${until ?? '?'}`,
    },
    ...rest,
  };
}

/** When the verification result can next change with time alone (validUntil), for requeueing. */
export function nextTimeBasedChange(policy: ErpIntegrationPolicy, now: Date): Date | undefined {
  const until = policy.spec.validUntil === undefined ? NaN : Date.parse(policy.spec.validUntil);
  return Number.isNaN(until) || until <= now.getTime() ? undefined : new Date(until);
}
