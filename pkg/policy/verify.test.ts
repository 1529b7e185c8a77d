import { describe, expect, it } from '@jest/globals';
import type { Approval } from '../api/v1alpha1/index.js';
import {
  buildPolicy,
  withApproval,
  withLastAuthor,
  withRules,
  withSpec,
  withoutSpecField,
} from '../../test/builders/policy.js';
import type { PolicyModifier } from '../../test/builders/policy.js';
import { specHash } from './hash.js';
import { nextTimeBasedChange, verifyPolicy } from './verify.js';
import type { ReviewerConfig } from './verify.js';

const now = new Date('2026-12-01T00:00:00Z');
const reviewers: ReviewerConfig = { groups: ['erp-reviewers'], users: ['carol'] };
const currentHash = specHash(buildPolicy().spec);
const approval = (overrides: Partial<Approval> = {}): Approval => ({
  by: 'alice',
  groups: ['erp-reviewers'],
  at: '2026-11-20T10:00:00Z',
  specHash: currentHash,
  ...overrides,
});

describe('verifyPolicy', () => {
  const cases: {
    name: string;
    modify: PolicyModifier[];
    reason: string;
    verified?: boolean;
    message: RegExp;
  }[] = [
    {
      name: 'approved by a reviewer who did not author it',
      modify: [withApproval(approval()), withLastAuthor('bob')],
      reason: 'Approved',
      verified: true,
      message: /approved by alice/,
    },
    {
      name: 'approved by a user listed as reviewer',
      modify: [withApproval(approval({ by: 'carol', groups: [] })), withLastAuthor('bob')],
      reason: 'Approved',
      verified: true,
      message: /approved by carol/,
    },
    {
      name: 'no approval',
      modify: [withLastAuthor('bob')],
      reason: 'NotApproved',
      message: /erpguard approve crm-reads-customers/,
    },
    {
      name: 'an approval for an earlier spec',
      modify: [withApproval(approval()), withSpec({ rateLimit: { requestsPerSecond: 500 } })],
      reason: 'ApprovalVoided',
      message: /changed after approval/,
    },
    {
      name: 'approved by its last author',
      modify: [withApproval(approval()), withLastAuthor('alice')],
      reason: 'SelfApproval',
      message: /alice approved a spec they last edited/,
    },
    {
      name: 'approved by its last author spelled differently',
      modify: [withApproval(approval({ by: ' Alice ' })), withLastAuthor('alice')],
      reason: 'SelfApproval',
      message: /last edited/,
    },
    {
      name: 'no last author recorded',
      modify: [withApproval(approval())],
      reason: 'LastAuthorUnknown',
      message: /self-approval cannot be ruled out/,
    },
    {
      name: 'an approval dated in the future',
      modify: [withApproval(approval({ at: '2099-01-01T00:00:00Z' })), withLastAuthor('bob')],
      reason: 'ApprovalInvalid',
      message: /in the future/,
    },
    {
      name: 'approved by someone outside the reviewer groups',
      modify: [
        withApproval(approval({ by: 'mallory', groups: ['developers'] })),
        withLastAuthor('bob'),
      ],
      reason: 'ApproverNotReviewer',
      message: /mallory is not a reviewer \(groups erp-reviewers\)/,
    },
    {
      name: 'past validUntil even though approved',
      modify: [withSpec({ validUntil: '2026-11-30T00:00:00Z' }), withApproval(approval())],
      reason: 'Expired',
      message: /has passed/,
    },
    {
      name: 'lint errors',
      modify: [withoutSpecField('rateLimit'), withApproval(approval())],
      reason: 'LintFailed',
      message: /NoRateLimit at spec.rateLimit/,
    },
    {
      name: 'an invalid spec',
      modify: [withRules({ methods: ['get'], paths: ['/a'] })],
      reason: 'InvalidSpec',
      message: /spec.rules\[0\].methods\[0\]/,
    },
  ];

  it.each(cases)('$name → $reason', ({ modify, reason, verified = false, message }) => {
    const result = verifyPolicy(buildPolicy(...modify), reviewers, now);
    expect(result.verified).toBe(verified);
    expect(result.condition).toMatchObject({
      type: 'Verified',
      status: verified ? 'True' : 'False',
      reason,
    });
    expect(result.condition.message).toMatch(message);
  });

  it('voids the approval on any spec edit: each edit flips Approved to ApprovalVoided', () => {
    const edits: Partial<Parameters<typeof withSpec>[0]>[] = [
      { mode: 'Audit' },
      { certificateTTL: '2h' },
      { validUntil: '2027-05-01T00:00:00Z' },
      { rules: [{ methods: ['GET', 'POST'], paths: ['/api/v1/customers'] }] },
      { dataProtection: {} },
    ];
    for (const edit of edits) {
      const result = verifyPolicy(
        buildPolicy(withApproval(approval()), withLastAuthor('bob'), withSpec(edit)),
        reviewers,
        now,
      );
      expect(result.condition.reason).toBe('ApprovalVoided');
    }
  });

  it('uses an approval passed in instead of the annotation, and null means none', () => {
    const policy = buildPolicy(withLastAuthor('bob'));
    expect(verifyPolicy(policy, reviewers, now, { approval: approval() }).verified).toBe(true);
    const annotated = buildPolicy(withApproval(approval()), withLastAuthor('bob'));
    expect(verifyPolicy(annotated, reviewers, now, { approval: null }).condition.reason).toBe(
      'NotApproved',
    );
  });

  it('flips to Expired exactly at validUntil', () => {
    const policy = buildPolicy(withApproval(approval()), withLastAuthor('bob'));
    const until = new Date('2027-06-30T00:00:00Z');
    expect(verifyPolicy(policy, reviewers, new Date(until.getTime() - 1)).verified).toBe(true);
    expect(verifyPolicy(policy, reviewers, until).condition.reason).toBe('Expired');
    expect(nextTimeBasedChange(policy, now)?.toISOString()).toBe(until.toISOString());
    expect(nextTimeBasedChange(policy, until)).toBeUndefined();
  });

  it('refuses approval when no reviewer groups are configured', () => {
    const result = verifyPolicy(
      buildPolicy(withApproval(approval()), withLastAuthor('bob')),
      { groups: [] },
      now,
    );
    expect(result.condition.reason).toBe('ApproverNotReviewer');
  });
});
