import { describe, expect, it } from '@jest/globals';
import { buildPolicy, withApproval, withLastAuthor, withSpec } from '../../test/builders/policy.js';
import { specHash } from '../policy/hash.js';
import { verifyPolicy } from '../policy/verify.js';
import { desiredStatus, statusEquals, verifiedTransition } from './policy-status.js';

const reviewers = { groups: ['erp-reviewers'] };
const t0 = new Date('2026-12-01T00:00:00Z');
const t1 = new Date('2026-12-01T01:00:00Z');
const approved = () => {
  const p = buildPolicy(withLastAuthor('bob'));
  p.metadata.generation = 3;
  return buildPolicy(
    withLastAuthor('bob'),
    withApproval({
      by: 'alice',
      groups: ['erp-reviewers'],
      at: '2026-11-01T00:00:00Z',
      specHash: specHash(p.spec),
    }),
    (q) => (q.metadata.generation = 3),
  );
};

describe('desiredStatus', () => {
  it('sets Verified and Ready with observedGeneration, spec hash and approval', () => {
    const policy = approved();
    const status = desiredStatus({
      policy,
      verification: verifyPolicy(policy, reviewers, t0),
      published: true,
      now: t0,
    });
    expect(status.observedGeneration).toBe(3);
    expect(status.specHash).toBe(specHash(policy.spec));
    expect(status.approval?.by).toBe('alice');
    expect(status.conditions).toEqual([
      expect.objectContaining({
        type: 'Ready',
        status: 'True',
        reason: 'Ready',
        observedGeneration: 3,
        lastTransitionTime: t0.toISOString(),
      }),
      expect.objectContaining({
        type: 'Verified',
        status: 'True',
        reason: 'Approved',
        observedGeneration: 3,
        lastTransitionTime: t0.toISOString(),
      }),
    ]);
  });

  it('keeps lastTransitionTime while the status value holds and moves it on a flip', () => {
    const policy = approved();
    policy.status = desiredStatus({
      policy,
      verification: verifyPolicy(policy, reviewers, t0),
      published: true,
      now: t0,
    });
    const again = desiredStatus({
      policy,
      verification: verifyPolicy(policy, reviewers, t1),
      published: true,
      now: t1,
    });
    expect(again.conditions?.every((c) => c.lastTransitionTime === t0.toISOString())).toBe(true);
    expect(statusEquals(policy.status, again)).toBe(true);
    expect(verifiedTransition(policy.status, again)).toBeUndefined();

    const edited = buildPolicy(withSpec({ rateLimit: { requestsPerSecond: 999 } }));
    edited.metadata = { ...policy.metadata, generation: 4 };
    edited.status = policy.status;
    const voided = desiredStatus({
      policy: edited,
      verification: verifyPolicy(edited, reviewers, t1),
      published: false,
      now: t1,
    });
    const verified = voided.conditions?.find((c) => c.type === 'Verified');
    expect(verified).toMatchObject({
      status: 'False',
      reason: 'ApprovalVoided',
      observedGeneration: 4,
      lastTransitionTime: t1.toISOString(),
    });
    expect(voided.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'NotVerified',
    });
    expect(statusEquals(policy.status, voided)).toBe(false);
    expect(verifiedTransition(policy.status, voided)).toMatchObject({
      from: 'True',
      to: 'False',
      reason: 'ApprovalVoided',
    });
  });

  it('reports Pending while a verified policy is not yet published', () => {
    const policy = approved();
    const status = desiredStatus({
      policy,
      verification: verifyPolicy(policy, reviewers, t0),
      published: false,
      now: t0,
    });
    expect(status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Pending',
    });
  });
});
