import { describe, expect, it } from '@jest/globals';

import { parseAdmissionReview } from './review.js';

const good = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'u-1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    namespace: 'erp',
    operation: 'CREATE',
    userInfo: { username: 'alice', groups: ['g'] },
    object: { kind: 'Pod' },
    oldObject: null,
    dryRun: false,
  },
};

function withRequest(patch: Record<string, unknown>): unknown {
  return { ...good, request: { ...good.request, ...patch } };
}

describe('parseAdmissionReview', () => {
  it('accepts a v1 review and normalises optional fields', () => {
    const r = parseAdmissionReview({
      ...good,
      request: { ...good.request, name: '', subResource: '' },
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.review.request.name).toBeUndefined();
    expect(r.review.request.subResource).toBeUndefined();
    expect(r.review.request.oldObject).toBeNull();
    expect(r.review.request.dryRun).toBe(false);
  });

  it.each([
    ['not an object', [], ''],
    ['null', null, ''],
    ['v1beta1', { ...good, apiVersion: 'admission.k8s.io/v1beta1' }, 'apiVersion'],
    ['wrong kind', { ...good, kind: 'TokenReview' }, 'kind'],
    ['no request', { apiVersion: good.apiVersion, kind: good.kind }, 'request'],
    ['no uid', withRequest({ uid: undefined }), 'request.uid'],
    ['empty uid', withRequest({ uid: '' }), 'request.uid'],
    ['numeric uid', withRequest({ uid: 7 }), 'request.uid'],
    ['bad operation', withRequest({ operation: 'PATCH' }), 'request.operation'],
    ['no kind', withRequest({ kind: undefined }), 'request.kind'],
    ['kind without version', withRequest({ kind: { kind: 'Pod' } }), 'request.kind.version'],
    ['no userInfo', withRequest({ userInfo: undefined }), 'request.userInfo'],
    [
      'groups not strings',
      withRequest({ userInfo: { username: 'a', groups: [1] } }),
      'request.userInfo.groups',
    ],
    ['object a string', withRequest({ object: 'x' }), 'request.object'],
    ['dryRun a string', withRequest({ dryRun: 'true' }), 'request.dryRun'],
  ])('rejects %s, naming %j', (_n, body, field) => {
    const r = parseAdmissionReview(body);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe('InvalidDocument');
    expect(r.field).toBe(field);
    expect(r.message.length).toBeGreaterThan(0);
  });

  it('returns the uid with a later error so a 400 can echo it', () => {
    const r = parseAdmissionReview(withRequest({ operation: 'NOPE' }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.uid).toBe('u-1');
  });
});
