/**
 * Admission of ErpIntegrationPolicy objects: semantic validation with field paths, the record of
 * the spec's last author, and the guard on approvals.
 *
 * The rules, and why:
 * - The mutating side sets `erpguard.io/last-author` to the requester whenever the spec changes
 *   (CREATE included) and puts the old value back when someone edits only the annotation, so the
 *   annotation always names the last person who changed what gets approved.
 * - A new or changed `erpguard.io/approval` is accepted only from a reviewer (group or listed
 *   user) who is the requester, names themselves in `by`, is not the last author, and signs the
 *   hash of the current spec. A spec change together with an approval change is refused: the
 *   approver would be approving a spec nobody reviewed. `approval.groups` may only name groups
 *   the API server authenticated the requester in (the mutating side fills it in when absent),
 *   because verification trusts it.
 * - An unchanged approval survives a spec edit and is simply void (hash mismatch): verification
 *   reports ApprovalVoided. Removing an approval is always allowed (revoking is fail-safe).
 */
import { ANNOTATION_APPROVAL, ANNOTATION_LAST_AUTHOR } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicySpec } from '../api/v1alpha1/index.js';
import { specHash } from '../policy/hash.js';
import { parseApprovalAnnotation, validatePolicyDocument } from '../policy/validate.js';

import { AdmissionDenial } from './codes.js';
import { PatchBuilder } from './json-patch.js';
import { dig, fieldPath, isMap, jsonEqual, stringMap } from './objects.js';
import type { JsonMap } from './objects.js';
import type { AdmissionRequest } from './review.js';
import type { AdmissionConfig, Finding } from './types.js';

/** How far in the future an approval time may lie (client clock skew). */
export const APPROVAL_CLOCK_SKEW_MS = 5 * 60_000;

const APPROVAL_FIELD = fieldPath('metadata', 'annotations', ANNOTATION_APPROVAL);
const AUTHOR_FIELD = fieldPath('metadata', 'annotations', ANNOTATION_LAST_AUTHOR);

/** Hash of a spec, or undefined when it is not a valid spec (then nothing can match it). */
function hashOf(spec: unknown): string | undefined {
  if (!isMap(spec)) return undefined;
  try {
    return specHash(spec as unknown as ErpIntegrationPolicySpec);
  } catch {
    return undefined;
  }
}

/** True when the spec differs semantically (defaults and ordering do not count as a change). */
export function specChanged(req: AdmissionRequest): boolean {
  if (req.operation === 'CREATE' || !isMap(req.oldObject)) return true;
  const a = dig(req.oldObject, 'spec');
  const b = dig(req.object, 'spec');
  const ha = hashOf(a);
  const hb = hashOf(b);
  if (ha !== undefined && hb !== undefined) return ha !== hb;
  return !jsonEqual(a, b);
}

function annotation(obj: unknown, key: string): string | undefined {
  return stringMap(obj, 'metadata', 'annotations')[key];
}

/** The object as validatePolicyDocument expects it: a name even when generateName is used. */
function forValidation(obj: JsonMap): JsonMap {
  const meta = obj['metadata'];
  if (!isMap(meta) || typeof meta['name'] === 'string') return obj;
  const gen = meta['generateName'];
  if (typeof gen !== 'string' || gen === '') return obj;
  // The API server assigns the name after admission; judge the rest with a stand-in suffix.
  return { ...obj, metadata: { ...meta, name: `${gen}x` } };
}

export interface PolicyJudgement {
  findings: Finding[];
  warnings: string[];
}

/** The validating side. */
export function judgePolicy(req: AdmissionRequest, config: AdmissionConfig): PolicyJudgement {
  const obj = req.object as JsonMap;
  const findings: Finding[] = [];
  const warnings: string[] = [];
  const username = req.userInfo.username;
  const changed = specChanged(req);
  const oldApproval = isMap(req.oldObject)
    ? annotation(req.oldObject, ANNOTATION_APPROVAL)
    : undefined;
  const newApproval = annotation(obj, ANNOTATION_APPROVAL);
  const approvalChanged = newApproval !== undefined && newApproval !== oldApproval;

  // Semantic validation: when the spec changes, and whenever a new approval must be judged.
  let currentHash: string | undefined;
  if (changed || approvalChanged) {
    const v = validatePolicyDocument(forValidation(obj));
    for (const e of v.errors) {
      // The approval annotation is judged below with its own codes.
      if (e.field.startsWith(`metadata.annotations[${ANNOTATION_APPROVAL}]`)) continue;
      findings.push({ code: AdmissionDenial.PolicyInvalid, field: e.field, message: e.message });
    }
    for (const w of v.warnings) warnings.push(w.message);
    if (findings.length === 0) currentHash = hashOf(obj['spec']);
  }

  // The last-author record must be what the mutating side wrote.
  const author = annotation(obj, ANNOTATION_LAST_AUTHOR);
  const oldAuthor = isMap(req.oldObject)
    ? annotation(req.oldObject, ANNOTATION_LAST_AUTHOR)
    : undefined;
  if (changed && author !== username) {
    findings.push({
      code: AdmissionDenial.LastAuthorTampered,
      field: AUTHOR_FIELD,
      message: `the spec changed, so ${ANNOTATION_LAST_AUTHOR} must be ${JSON.stringify(username)} (is the erpguard mutating webhook installed?)`,
    });
  } else if (!changed && author !== oldAuthor) {
    findings.push({
      code: AdmissionDenial.LastAuthorTampered,
      field: AUTHOR_FIELD,
      message: `${ANNOTATION_LAST_AUTHOR} can only change together with the spec`,
    });
  }

  if (approvalChanged)
    findings.push(...judgeApproval(req, config, newApproval, author, changed, currentHash));
  return { findings, warnings };
}

function judgeApproval(
  req: AdmissionRequest,
  config: AdmissionConfig,
  text: string,
  lastAuthor: string | undefined,
  changed: boolean,
  currentHash: string | undefined,
): Finding[] {
  const parsed = parseApprovalAnnotation(text);
  if (parsed.approval === undefined) {
    return [
      {
        code: AdmissionDenial.ApprovalMalformed,
        field: parsed.error?.field ?? APPROVAL_FIELD,
        message: parsed.error?.message ?? `${APPROVAL_FIELD} is not a valid approval`,
      },
    ];
  }
  const a = parsed.approval;
  const user = req.userInfo;
  const out: Finding[] = [];
  const deny = (code: AdmissionDenial, message: string): void => {
    out.push({ code, field: APPROVAL_FIELD, message });
  };
  if (req.operation === 'UPDATE' && changed) {
    deny(
      AdmissionDenial.ApprovalWithSpecChange,
      'the spec and the approval change in the same request; change the spec first, then have a reviewer approve it',
    );
  }
  if (a.by !== user.username) {
    deny(
      AdmissionDenial.ApprovalNotByRequester,
      `approval.by is ${JSON.stringify(a.by)} but the request comes from ${JSON.stringify(user.username)}; approve as yourself`,
    );
  }
  const reviewerGroups = config.reviewers.groups;
  const isReviewer =
    (config.reviewers.users ?? []).includes(user.username) ||
    user.groups.some((g) => reviewerGroups.includes(g));
  if (!isReviewer) {
    deny(
      AdmissionDenial.ApproverNotReviewer,
      `${user.username} is not a reviewer (reviewer groups: ${reviewerGroups.length > 0 ? reviewerGroups.join(', ') : 'none configured'})`,
    );
  }
  const foreign = (a.groups ?? []).filter((g) => !user.groups.includes(g));
  if (foreign.length > 0) {
    deny(
      AdmissionDenial.ApprovalGroupsMismatch,
      `approval.groups names groups ${user.username} is not in: ${foreign.join(', ')}`,
    );
  }
  if (lastAuthor === undefined || lastAuthor === '') {
    deny(
      AdmissionDenial.LastAuthorUnknown,
      `no ${ANNOTATION_LAST_AUTHOR} is recorded, so self-approval cannot be ruled out; the next spec change records it`,
    );
  } else if (lastAuthor === user.username) {
    deny(
      AdmissionDenial.SelfApproval,
      `${user.username} last changed the spec and cannot approve it; ask another reviewer`,
    );
  }
  if (currentHash !== undefined && a.specHash !== currentHash) {
    deny(
      AdmissionDenial.ApprovalHashMismatch,
      `approval.specHash ${a.specHash} is not the current spec's hash ${currentHash}; re-read the policy and approve what it says now`,
    );
  }
  const at = Date.parse(a.at);
  if (!Number.isNaN(at) && at > config.now.getTime() + APPROVAL_CLOCK_SKEW_MS) {
    deny(AdmissionDenial.ApprovalMalformed, `approval.at ${a.at} lies in the future`);
  }
  return out;
}

/**
 * The mutating side: records the last author and completes a reviewer's own approval with the
 * authenticated groups and time. Returns the builder (no operations when nothing to do).
 */
export function mutatePolicy(req: AdmissionRequest, config: AdmissionConfig): PatchBuilder {
  const obj = req.object as JsonMap;
  const b = new PatchBuilder(obj);
  const annotations: string[] = ['metadata', 'annotations'];
  const username = req.userInfo.username;
  if (specChanged(req)) {
    if (username !== '') b.setKey(annotations, ANNOTATION_LAST_AUTHOR, username);
  } else {
    const old = isMap(req.oldObject)
      ? annotation(req.oldObject, ANNOTATION_LAST_AUTHOR)
      : undefined;
    const cur = annotation(obj, ANNOTATION_LAST_AUTHOR);
    if (cur !== old) {
      if (old === undefined) b.removeKey(annotations, ANNOTATION_LAST_AUTHOR);
      else b.setKey(annotations, ANNOTATION_LAST_AUTHOR, old);
    }
  }

  const text = annotation(obj, ANNOTATION_APPROVAL);
  const oldText = isMap(req.oldObject) ? annotation(req.oldObject, ANNOTATION_APPROVAL) : undefined;
  if (text !== undefined && text !== oldText) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return b; // the validating side explains what is wrong
    }
    if (isMap(value) && value['by'] === username) {
      let completed = value;
      if (value['groups'] === undefined) {
        const groups = req.userInfo.groups.filter((g) => config.reviewers.groups.includes(g));
        if (groups.length > 0) completed = { ...completed, groups };
      }
      if (completed['at'] === undefined) completed = { ...completed, at: config.now.toISOString() };
      if (completed !== value)
        b.setKey(annotations, ANNOTATION_APPROVAL, JSON.stringify(completed));
    }
  }
  return b;
}
