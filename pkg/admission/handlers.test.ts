/**
 * Table-driven tests over AdmissionReview fixtures shaped as the API server sends them
 * (test/fixtures/admission). Every patch is applied with a strict RFC 6902 implementation and
 * the assertions are on the resulting object; validation runs on the patched object, as in the
 * API server (mutating webhooks first).
 */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from '@jest/globals';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

import { ANNOTATION_LAST_AUTHOR, SIDECAR_CONTAINER_NAME } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { specHash } from '../policy/hash.js';
import { verifyPolicy } from '../policy/verify.js';

import { AdmissionDenial, AdmissionSkip } from './codes.js';
import { mutateReview, validateReview } from './handlers.js';
import { admitOffline } from './offline.js';
import { parseAdmissionReview } from './review.js';
import type { AdmissionReview, AdmissionResponse } from './review.js';
import type { AdmissionConfig, AdmissionResult, DecisionLabel, Snapshot } from './types.js';

const { applyPatch } = fastJsonPatch;
type Json = Record<string, unknown>;

const FIXTURES = new URL('../../test/fixtures/admission/', import.meta.url);
function fixture(name: string): AdmissionReview {
  const parsed = parseAdmissionReview(JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')));
  if (!parsed.ok) throw new Error(`${name}: ${parsed.message}`);
  return parsed.review;
}
const snapshot = JSON.parse(readFileSync(new URL('snapshot.json', FIXTURES), 'utf8')) as Snapshot;

const config: AdmissionConfig = {
  reviewers: { groups: ['erp-reviewers'] },
  ownNamespace: 'erpguard-system',
  sidecar: { image: 'registry.example/erpguard/proxy:0.1.0' },
  trustDomain: 'cluster.local',
  controllerAddress: 'erpguard-controller.erpguard-system.svc:15012',
  now: new Date('2026-09-01T00:00:00Z'),
};

function decodePatch(response: AdmissionResponse): Operation[] {
  if (response.patch === undefined) return [];
  expect(response.patchType).toBe('JSONPatch');
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Operation[];
}

/** Applies the response's patch with fast-json-patch in validating (strict) mode. */
function applyStrict(obj: unknown, response: AdmissionResponse): Json {
  const ops = decodePatch(response);
  return applyPatch(structuredClone(obj), ops, true, false).newDocument as Json;
}

function withObject(
  review: AdmissionReview,
  object: unknown,
  extra: Partial<AdmissionReview['request']> = {},
): AdmissionReview {
  return { ...review, request: { ...review.request, ...extra, object } };
}

/** Mutate, apply strictly, then validate the patched object, like the API server. */
function admit(review: AdmissionReview, snap: Snapshot = snapshot, cfg: AdmissionConfig = config) {
  const m = mutateReview(review, snap, cfg);
  const patched = m.response.allowed ? applyStrict(review.request.object, m.response) : undefined;
  const v = validateReview(patched === undefined ? review : withObject(review, patched), snap, cfg);
  return { m, v, patched };
}

const dig = (o: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>(
    (cur, k) => (cur !== null && typeof cur === 'object' ? (cur as Json)[k] : undefined),
    o,
  );
const arr = (o: unknown, ...path: (string | number)[]): Json[] =>
  (dig(o, ...path) as Json[] | undefined) ?? [];
const envNames = (c: Json): string[] => arr(c, 'env').map((e) => e['name'] as string);

interface Case {
  name: string;
  fixture: string;
  mutate: DecisionLabel;
  validate: DecisionLabel;
  skip?: AdmissionSkip;
  codes?: AdmissionDenial[];
  check?: (r: {
    m: AdmissionResult;
    v: AdmissionResult;
    patched: Json | undefined;
    review: AdmissionReview;
  }) => void;
}

const cases: Case[] = [
  {
    name: 'ReplicaSet-made pod (generateName, no name or namespace) gets the native sidecar',
    fixture: 'pod-create-replicaset.json',
    mutate: 'patched',
    validate: 'allowed',
    check: ({ patched, review }) => {
      const init = arr(patched, 'spec', 'initContainers');
      expect(init.map((c) => c['name'])).toEqual([SIDECAR_CONTAINER_NAME]);
      const sc = init[0] as Json;
      expect(sc['restartPolicy']).toBe('Always');
      expect(sc['image']).toBe(config.sidecar.image);
      expect(arr(sc, 'ports').map((p) => p['containerPort'])).toEqual([15443, 15020]);
      expect(sc['securityContext']).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(sc['resources']).toBeDefined();
      expect(arr(sc, 'env').find((e) => e['name'] === 'ERPGUARD_MODULE')?.['value']).toBe('crm');
      const token = arr(patched, 'spec', 'volumes').find((v) => v['name'] === 'erpguard-token');
      expect(dig(token, 'projected', 'sources', 0, 'serviceAccountToken')).toEqual({
        audience: 'erpguard',
        expirationSeconds: 3600,
        path: 'token',
      });
      // The existing kube-api-access volume and the app container's own env are kept.
      expect(arr(patched, 'spec', 'volumes')[0]?.['name']).toBe('kube-api-access-x7k2p');
      const app = arr(patched, 'spec', 'containers')[0] as Json;
      expect(envNames(app)).toEqual([
        'LOG_LEVEL',
        'HTTP_PROXY',
        'http_proxy',
        'NO_PROXY',
        'no_proxy',
      ]);
      expect(arr(app, 'env').find((e) => e['name'] === 'HTTP_PROXY')?.['value']).toBe(
        'http://127.0.0.1:15001',
      );
      const noProxy = String(arr(app, 'env').find((e) => e['name'] === 'NO_PROXY')?.['value']);
      expect(noProxy.split(',')).toEqual(
        expect.arrayContaining(['localhost', '127.0.0.1', 'kubernetes.default.svc']),
      );
      expect(dig(patched, 'metadata', 'annotations')).toEqual({
        'erpguard.io/integrations': 'finance',
        'erpguard.io/injected': 'true',
        'erpguard.io/app-port': '8080',
      });
      // No name or namespace invented, nothing undefined written.
      expect(dig(patched, 'metadata', 'name')).toBeUndefined();
      expect(dig(patched, 'metadata', 'namespace')).toBeUndefined();
      expect(dig(patched, 'metadata', 'generateName')).toBe('crm-api-7d9f8b6c5d-');
      expect(JSON.stringify(patched)).not.toMatch(/undefined/);
      // Everything else of the original object is untouched.
      const original = review.request.object as Json;
      expect(dig(patched, 'spec', 'tolerations')).toEqual(dig(original, 'spec', 'tolerations'));
      expect(dig(patched, 'status')).toEqual(dig(original, 'status'));
    },
  },
  {
    name: 'existing init containers stay, after the sidecar; their env is completed, never replaced',
    fixture: 'pod-create-init-containers.json',
    mutate: 'patched',
    validate: 'allowed',
    check: ({ patched }) => {
      const init = arr(patched, 'spec', 'initContainers');
      expect(init.map((c) => c['name'])).toEqual([SIDECAR_CONTAINER_NAME, 'migrate', 'warm-cache']);
      const migrate = init[1] as Json;
      expect(arr(migrate, 'env').find((e) => e['name'] === 'HTTP_PROXY')?.['value']).toBe(
        'http://corp-proxy:3128',
      );
      expect(envNames(migrate)).toEqual(['HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']);
      expect(envNames(init[2] as Json)).toEqual([
        'HTTP_PROXY',
        'http_proxy',
        'NO_PROXY',
        'no_proxy',
      ]);
      // The pod had no annotations map: created, with our keys only.
      expect(dig(patched, 'metadata', 'annotations')).toEqual({
        'erpguard.io/injected': 'true',
        'erpguard.io/app-port': '8080',
      });
      expect(dig(patched, 'metadata', 'labels')).toEqual({
        'erpguard.io/module': 'crm',
        'example.com/tier~weird': 'a/b',
      });
    },
  },
  {
    name: 'annotation keys with / and ~ are escaped (RFC 6901) and survive',
    fixture: 'pod-create-escaped-keys.json',
    mutate: 'patched',
    validate: 'allowed',
    check: ({ m, patched }) => {
      const paths = decodePatch(m.response).map((o) => o.path);
      expect(paths).toContain('/metadata/annotations/erpguard.io~1injected');
      expect(dig(patched, 'metadata', 'annotations')).toEqual({
        'example.com/owner~team': 'crm',
        'a~1b': 'literal tilde-one',
        'erpguard.io/integrations': 'finance',
        'erpguard.io/injected': 'true',
      });
    },
  },
  {
    name: 'kube-system is never touched, whatever its labels say',
    fixture: 'pod-create-kube-system.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.NamespaceExempt,
  },
  {
    name: 'hostNetwork is refused',
    fixture: 'pod-create-hostnetwork.json',
    mutate: 'patched',
    validate: 'denied',
    codes: [AdmissionDenial.HostNetwork],
  },
  {
    name: 'ephemeral containers are refused in an enforced namespace',
    fixture: 'pod-ephemeralcontainers.json',
    mutate: 'skipped',
    validate: 'denied',
    codes: [AdmissionDenial.EphemeralContainerRefused],
  },
  {
    name: 'Deployment with a verified integration is admitted, and not patched',
    fixture: 'deployment-create.json',
    mutate: 'skipped',
    validate: 'allowed',
  },
  {
    name: 'dryRun is judged exactly like a real request',
    fixture: 'deployment-create-dryrun.json',
    mutate: 'skipped',
    validate: 'denied',
    codes: [AdmissionDenial.ServiceAccountNotBound, AdmissionDenial.IntegrationNotVerified],
    check: ({ v, review }) => {
      const real = validateReview(
        { ...review, request: { ...review.request, dryRun: false } },
        snapshot,
        config,
      );
      expect(real.response).toEqual(v.response);
    },
  },
  {
    name: 'every integration gap is listed with its reason',
    fixture: 'deployment-create-gaps.json',
    mutate: 'skipped',
    validate: 'denied',
    codes: [AdmissionDenial.IntegrationNotVerified],
    check: ({ v }) => {
      const msg = v.response.status?.message ?? '';
      expect(v.response.status?.code).toBe(403);
      expect(msg).toMatch(/wms: not verified; policy erp\/crm-to-wms ApprovalVoided/);
      expect(msg).toMatch(/bi: not verified; policy erp\/crm-to-bi NotApproved/);
      expect(msg).toMatch(/inventory: not verified; policy erp\/crm-to-inventory SelfApproval/);
      expect(msg).toMatch(/hr: not verified; policy erp\/crm-to-hr Expired/);
      expect(msg).toMatch(/payroll: NoPolicy/);
      expect(msg).not.toMatch(/finance:/);
      expect(v.findings).toHaveLength(5);
    },
  },
  {
    name: 'UPDATE adding an unverified integration is judged against the new object',
    fixture: 'deployment-update.json',
    mutate: 'skipped',
    validate: 'denied',
    codes: [AdmissionDenial.IntegrationNotVerified],
  },
  {
    name: 'UPDATE that only removes a finalizer is never blocked',
    fixture: 'deployment-update-finalizer-removal.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.FinalizerRemoval,
  },
  {
    name: 'metadata-only UPDATE of an object being deleted is never blocked',
    fixture: 'deployment-update-deleting-metadata.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.DeletingMetadataOnly,
  },
  {
    name: 'DELETE with object null is never blocked',
    fixture: 'deployment-delete.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.OperationIgnored,
  },
  {
    name: 'the scale subresource is never blocked',
    fixture: 'deployment-scale.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.SubresourceIgnored,
  },
  {
    name: 'the status subresource is never blocked',
    fixture: 'deployment-status.json',
    mutate: 'skipped',
    validate: 'skipped',
    skip: AdmissionSkip.SubresourceIgnored,
  },
  {
    name: 'Audit namespace: a CronJob with a gap is allowed with warnings',
    fixture: 'cronjob-create-audit.json',
    mutate: 'skipped',
    validate: 'warned',
    codes: [AdmissionDenial.IntegrationNotVerified],
    check: ({ v }) => {
      expect(v.response.allowed).toBe(true);
      expect(v.response.status).toBeUndefined();
      expect(v.response.warnings?.join('\n')).toMatch(/bi: NoPolicy/);
      for (const w of v.response.warnings ?? []) expect(w.length).toBeLessThanOrEqual(256);
    },
  },
  {
    name: 'policy CREATE: the creator is recorded as last author',
    fixture: 'policy-create.json',
    mutate: 'patched',
    validate: 'allowed',
    check: ({ patched }) => {
      expect(dig(patched, 'metadata', 'annotations', ANNOTATION_LAST_AUTHOR)).toBe(
        'alice@corp.example',
      );
      expect(
        dig(patched, 'metadata', 'annotations', 'kubectl.kubernetes.io/last-applied-configuration'),
      ).toBe('{}');
    },
  },
  {
    name: 'policy approval by a reviewer who is not the author: accepted, groups completed, verifies',
    fixture: 'policy-update-approve.json',
    mutate: 'patched',
    validate: 'allowed',
    check: ({ patched }) => {
      const approval = JSON.parse(
        String(dig(patched, 'metadata', 'annotations', 'erpguard.io/approval')),
      ) as Json;
      expect(approval['groups']).toEqual(['erp-reviewers']);
      const v = verifyPolicy(
        patched as unknown as ErpIntegrationPolicy,
        config.reviewers,
        config.now,
      );
      expect(v.condition.reason).toBe('Approved');
    },
  },
  {
    name: 'policy: spec change together with a new approval is refused',
    fixture: 'policy-update-spec-and-approval.json',
    mutate: 'patched',
    validate: 'denied',
    codes: [AdmissionDenial.ApprovalWithSpecChange, AdmissionDenial.SelfApproval],
  },
];

describe('admission handlers over API-server-shaped fixtures', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const review = fixture(c.fixture);
    const { m, v, patched } = admit(review);
    expect(m.decision).toBe(c.mutate);
    expect(v.decision).toBe(c.validate);
    for (const r of [m, v]) {
      expect(r.response.uid).toBe(review.request.uid);
    }
    expect(v.response.patch).toBeUndefined();
    if (c.skip !== undefined) expect(v.skip).toBe(c.skip);
    if (c.codes !== undefined)
      expect([...new Set(v.findings.map((f) => f.code))].sort()).toEqual([...c.codes].sort());
    if (c.validate === 'denied') {
      expect(v.response.allowed).toBe(false);
      expect(v.response.status?.message).toContain('erpguard:');
    }
    c.check?.({ m, v, patched, review });
  });
});

/** A pod as stored after our injection: the input of UPDATE and re-invocation cases. */
function injectedPod(): Json {
  const review = fixture('pod-create-replicaset.json');
  const m = mutateReview(review, snapshot, config);
  return applyStrict(review.request.object, m.response);
}

describe('injection is idempotent', () => {
  it('re-invocation and re-submission add nothing', () => {
    const review = fixture('pod-create-replicaset.json');
    const once = injectedPod();
    const again = mutateReview(withObject(review, once), snapshot, config);
    expect(again.decision).toBe('allowed');
    expect(again.response.patch).toBeUndefined();
  });

  it('a container another webhook added after our first pass still gets the proxy variables', () => {
    const review = fixture('pod-create-replicaset.json');
    const pod = injectedPod();
    arr(pod, 'spec', 'containers').push({ name: 'late-addition', image: 'example/log-shipper:1' });
    const again = mutateReview(withObject(review, pod), snapshot, config);
    const patched = applyStrict(pod, again.response);
    expect(
      arr(patched, 'spec', 'initContainers').filter((c) => c['name'] === SIDECAR_CONTAINER_NAME),
    ).toHaveLength(1);
    expect(envNames(arr(patched, 'spec', 'containers')[1] as Json)).toEqual([
      'HTTP_PROXY',
      'http_proxy',
      'NO_PROXY',
      'no_proxy',
    ]);
    expect(decodePatch(again.response).every((o) => o.path.startsWith('/spec/containers/1/'))).toBe(
      true,
    );
  });
});

describe('the gate', () => {
  const base = fixture('pod-create-replicaset.json');
  const pod = (edit: (p: Json) => void): AdmissionReview => {
    const p = structuredClone(base.request.object) as Json;
    edit(p);
    return withObject(base, p);
  };
  const setSa = (name: string) => (p: Json) => {
    (p['spec'] as Json)['serviceAccountName'] = name;
  };

  it.each([
    [
      'no module label',
      AdmissionDenial.ModuleLabelMissing,
      (p: Json) => delete (dig(p, 'metadata', 'labels') as Json)['erpguard.io/module'],
    ],
    [
      'bad module label',
      AdmissionDenial.ModuleLabelInvalid,
      (p: Json) => ((dig(p, 'metadata', 'labels') as Json)['erpguard.io/module'] = 'CRM!'),
    ],
    [
      'ServiceAccount of another module',
      AdmissionDenial.ServiceAccountModuleMismatch,
      setSa('finance'),
    ],
    ['unbound ServiceAccount', AdmissionDenial.ServiceAccountNotBound, setSa('default')],
    ['unknown ServiceAccount', AdmissionDenial.ServiceAccountUnknown, setSa('nobody')],
    [
      'bad integrations',
      AdmissionDenial.IntegrationsInvalid,
      (p: Json) =>
        ((dig(p, 'metadata', 'annotations') as Json)['erpguard.io/integrations'] =
          'finance,Bad_Name'),
    ],
    [
      'opt-out annotation',
      AdmissionDenial.OptOutRefused,
      (p: Json) => ((dig(p, 'metadata', 'annotations') as Json)['erpguard.io/inject'] = 'false'),
    ],
    [
      'opt-out label',
      AdmissionDenial.OptOutRefused,
      (p: Json) => ((dig(p, 'metadata', 'labels') as Json)['erpguard.io/inject'] = 'disabled'),
    ],
    [
      'a regular container named erpguard-proxy',
      AdmissionDenial.SidecarAltered,
      (p: Json) =>
        arr(p, 'spec', 'containers').push({ name: SIDECAR_CONTAINER_NAME, image: 'evil' }),
    ],
  ])('%s → %s', (_name, code, edit) => {
    const { v } = admit(pod(edit));
    expect(v.decision).toBe('denied');
    expect(v.findings.map((f) => f.code)).toContain(code);
    expect(v.findings.find((f) => f.code === code)?.field).toBeDefined();
  });

  it('a pre-seeded fake sidecar is kept by the injector but refused by validation', () => {
    const { m, v, patched } = admit(
      pod((p) => {
        (p['spec'] as Json)['initContainers'] = [
          { name: SIDECAR_CONTAINER_NAME, image: 'attacker/noop:1', restartPolicy: 'Always' },
        ];
      }),
    );
    expect(m.decision).toBe('patched');
    expect(arr(patched, 'spec', 'initContainers')[0]?.['image']).toBe('attacker/noop:1');
    expect(v.findings.map((f) => f.code)).toEqual([AdmissionDenial.SidecarAltered]);
    expect(v.response.status?.message).toMatch(/image/);
  });

  it('a module pod that reaches validation without the sidecar is refused', () => {
    const v = validateReview(base, snapshot, config);
    expect(v.findings.map((f) => f.code)).toEqual([AdmissionDenial.SidecarMissing]);
    // A generateName pod has no name yet: the message says so instead of printing undefined.
    expect(v.response.status?.message).toMatch(
      /^erpguard: Pod erp\/crm-api-7d9f8b6c5d-<generated> is not admitted/,
    );
  });

  it('unlabelled namespaces are out of scope; unknown ones are enforced unless configured', () => {
    const sandbox: AdmissionReview = {
      ...base,
      request: { ...base.request, namespace: 'sandbox' },
    };
    expect(admit(sandbox).m.skip).toBe(AdmissionSkip.NamespaceNotEnforced);
    expect(admit(sandbox).v.skip).toBe(AdmissionSkip.NamespaceNotEnforced);
    const fresh: AdmissionReview = {
      ...base,
      request: { ...base.request, namespace: 'brand-new' },
    };
    expect(admit(fresh).v.findings.map((f) => f.code)).toContain(
      AdmissionDenial.ServiceAccountUnknown,
    );
    expect(admit(fresh, snapshot, { ...config, unknownNamespace: 'ignore' }).v.decision).toBe(
      'skipped',
    );
    const own: AdmissionReview = {
      ...base,
      request: { ...base.request, namespace: 'erpguard-system' },
    };
    expect(admit(own).v.skip).toBe(AdmissionSkip.NamespaceExempt);
  });

  it('verified policies stored in system namespaces or our own do not count', () => {
    const fin = snapshot.policies.find(
      (p) => p.metadata.name === 'crm-to-finance',
    ) as ErpIntegrationPolicy;
    const moved = (namespace: string): ErpIntegrationPolicy => {
      const p = structuredClone(fin);
      p.metadata.namespace = namespace;
      p.spec.source.namespace = 'erp';
      const approval = JSON.parse(String(p.metadata.annotations?.['erpguard.io/approval'])) as Json;
      approval['specHash'] = specHash(p.spec);
      (p.metadata.annotations as Record<string, string>)['erpguard.io/approval'] =
        JSON.stringify(approval);
      expect(verifyPolicy(p, config.reviewers, config.now).verified).toBe(true);
      return p;
    };
    const dep = fixture('deployment-create.json');
    for (const ns of ['kube-system', 'erpguard-system']) {
      const snap: Snapshot = {
        ...snapshot,
        policies: [...snapshot.policies.filter((p) => p !== fin), moved(ns)],
      };
      const v = validateReview(dep, snap, config);
      expect(v.response.status?.message).toMatch(/finance: NoPolicy/);
    }
    const other: Snapshot = {
      ...snapshot,
      policies: [...snapshot.policies.filter((p) => p !== fin), moved('erp-shared')],
    };
    expect(validateReview(dep, other, config).decision).toBe('allowed');
  });

  it.each(['StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job'])(
    '%s templates are gated like Deployments',
    (kind) => {
      const dep = fixture('deployment-create-gaps.json');
      const group = kind === 'Job' ? 'batch' : 'apps';
      const obj = { ...(dep.request.object as Json), kind };
      const review: AdmissionReview = {
        ...dep,
        request: { ...dep.request, kind: { group, version: 'v1', kind }, object: obj },
      };
      const v = validateReview(review, snapshot, config);
      expect(v.decision).toBe('denied');
      expect(v.findings).toHaveLength(5);
    },
  );

  it('a module label only on the Deployment (not its template) is explained', () => {
    const dep = fixture('deployment-create.json');
    const obj = structuredClone(dep.request.object) as Json;
    delete (dig(obj, 'spec', 'template', 'metadata', 'labels') as Json)['erpguard.io/module'];
    const v = validateReview(withObject(dep, obj), snapshot, config);
    expect(v.findings[0]?.code).toBe(AdmissionDenial.ModuleLabelMissing);
    expect(v.findings[0]?.message).toMatch(/not on its pod template/);
  });

  it('integrations declared on the Deployment itself count too', () => {
    const dep = fixture('deployment-create.json');
    const obj = structuredClone(dep.request.object) as Json;
    (dig(obj, 'metadata', 'annotations') as Json)['erpguard.io/integrations'] = 'bi';
    const v = validateReview(withObject(dep, obj), snapshot, config);
    expect(v.response.status?.message).toMatch(/bi: not verified/);
  });

  it('a workload UPDATE that leaves the gated fields alone is not re-judged (scaling, relabelling)', () => {
    const upd = fixture('deployment-update.json');
    const obj = structuredClone(upd.request.oldObject) as Json;
    (obj['spec'] as Json)['replicas'] = 7;
    (dig(obj, 'metadata', 'labels') as Json)['team'] = 'crm';
    (dig(obj, 'spec', 'template', 'metadata', 'annotations') as Json)['erpguard.io/integrations'] =
      'finance';
    const v = validateReview(withObject(upd, obj), { ...snapshot, policies: [] }, config);
    expect(v.skip).toBe(AdmissionSkip.GateInputsUnchanged);
  });

  it('a malformed pod spec gets a clear denial, not a crash', () => {
    const m = mutateReview(
      pod((p) => ((p['spec'] as Json)['initContainers'] = 'oops')),
      snapshot,
      config,
    );
    expect(m.response.allowed).toBe(false);
    expect(m.response.status?.code).toBe(422);
    expect(m.response.status?.message).toMatch(
      /InvalidObject: \/spec\/initContainers must be a list/,
    );
    const v = validateReview(
      withObject(fixture('deployment-create.json'), { kind: 'Deployment', spec: {} }),
      snapshot,
      config,
    );
    expect(v.response.status?.message).toMatch(/spec.template is missing/);
  });
});

describe('UPDATE of an injected pod', () => {
  const base = fixture('pod-create-replicaset.json');
  const update = (edit: (p: Json) => void): AdmissionReview => {
    const old = injectedPod();
    const meta = old['metadata'] as Json;
    meta['name'] = 'crm-api-7d9f8b6c5d-x2v9q';
    meta['namespace'] = 'erp';
    const next = structuredClone(old);
    edit(next);
    return {
      ...base,
      request: {
        ...base.request,
        operation: 'UPDATE',
        name: 'crm-api-7d9f8b6c5d-x2v9q',
        object: next,
        oldObject: old,
      },
    };
  };

  it.each([
    [
      'image swap',
      (p: Json) => ((arr(p, 'spec', 'initContainers')[0] as Json)['image'] = 'attacker/noop:1'),
    ],
    ['removal', (p: Json) => ((p['spec'] as Json)['initContainers'] = [])],
    ['env change', (p: Json) => arr(p, 'spec', 'initContainers', 0, 'env').pop()],
  ])('refuses sidecar %s', (_n, edit) => {
    const v = validateReview(update(edit), snapshot, config);
    expect(v.findings.map((f) => f.code)).toContain(AdmissionDenial.SidecarTampered);
  });

  it('allows an app image update', () => {
    const v = validateReview(
      update(
        (p) =>
          ((arr(p, 'spec', 'containers')[0] as Json)['image'] =
            'registry.example/erp/crm-api:4.2.1'),
      ),
      snapshot,
      config,
    );
    expect(v.decision).toBe('allowed');
  });

  it('refuses moving the pod to another module by relabelling it', () => {
    const v = validateReview(
      update((p) => ((dig(p, 'metadata', 'labels') as Json)['erpguard.io/module'] = 'finance')),
      snapshot,
      config,
    );
    expect(v.findings.map((f) => f.code)).toContain(AdmissionDenial.ServiceAccountModuleMismatch);
  });
});

describe('a large object', () => {
  it('injects into 60 containers with 40 env vars each and a 3 MiB annotation', () => {
    const review = fixture('pod-create-replicaset.json');
    const pod = structuredClone(review.request.object) as Json;
    const containers = arr(pod, 'spec', 'containers');
    const template = containers[0] as Json;
    containers.length = 0;
    for (let i = 0; i < 60; i++) {
      containers.push({
        ...structuredClone(template),
        name: `c${i}`,
        env: Array.from({ length: 40 }, (_, j) => ({ name: `V${j}`, value: 'x'.repeat(64) })),
      });
    }
    (dig(pod, 'metadata', 'annotations') as Json)['example.com/blob'] = 'y'.repeat(3 * 1024 * 1024);
    const { m, v, patched } = admit(withObject(review, pod));
    expect(m.decision).toBe('patched');
    expect(v.decision).toBe('allowed');
    for (const c of arr(patched, 'spec', 'containers'))
      expect(envNames(c).slice(-4)).toEqual(['HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']);
    expect(String(dig(patched, 'metadata', 'annotations', 'example.com/blob'))).toHaveLength(
      3 * 1024 * 1024,
    );
  });
});

describe('ErpIntegrationPolicy approvals', () => {
  const approve = fixture('policy-update-approve.json');
  const withApproval = (
    edit: (a: Json) => void,
    user = approve.request.userInfo,
  ): AdmissionReview => {
    const obj = structuredClone(approve.request.object) as Json;
    const ann = dig(obj, 'metadata', 'annotations') as Json;
    const a = JSON.parse(String(ann['erpguard.io/approval'])) as Json;
    edit(a);
    ann['erpguard.io/approval'] = JSON.stringify(a);
    const oldObject = structuredClone(approve.request.oldObject);
    return { ...approve, request: { ...approve.request, object: obj, oldObject, userInfo: user } };
  };
  const mallory = {
    username: 'mallory@corp.example',
    groups: ['erp-developers', 'system:authenticated'],
  };
  const alice = {
    username: 'alice@corp.example',
    groups: ['erp-reviewers', 'system:authenticated'],
  };

  it.each([
    [
      "approval in someone else's name",
      withApproval((a) => (a['by'] = 'carol@corp.example')),
      AdmissionDenial.ApprovalNotByRequester,
    ],
    [
      'a non-reviewer approving',
      withApproval((a) => (a['by'] = mallory.username), mallory),
      AdmissionDenial.ApproverNotReviewer,
    ],
    [
      'the last author approving',
      withApproval((a) => (a['by'] = alice.username), alice),
      AdmissionDenial.SelfApproval,
    ],
    [
      'a stale spec hash',
      withApproval((a) => (a['specHash'] = `sha256:${'0'.repeat(64)}`)),
      AdmissionDenial.ApprovalHashMismatch,
    ],
    [
      'forged groups',
      withApproval((a) => (a['groups'] = ['erp-reviewers', 'cluster-admins'])),
      AdmissionDenial.ApprovalGroupsMismatch,
    ],
    [
      'a time in the future',
      withApproval((a) => (a['at'] = '2027-01-01T00:00:00Z')),
      AdmissionDenial.ApprovalMalformed,
    ],
    [
      'not JSON',
      (() => {
        const r = withApproval(() => undefined);
        (dig(r.request.object, 'metadata', 'annotations') as Json)['erpguard.io/approval'] =
          '{by: bob';
        return r;
      })(),
      AdmissionDenial.ApprovalMalformed,
    ],
  ])('refuses %s', (_n, review, code) => {
    const { v } = admit(review);
    expect(v.decision).toBe('denied');
    expect(v.findings.map((f) => f.code)).toContain(code);
  });

  it('refuses approval when no last author is recorded', () => {
    const r = withApproval(() => undefined);
    for (const o of [r.request.object, r.request.oldObject])
      delete (dig(o, 'metadata', 'annotations') as Json)[ANNOTATION_LAST_AUTHOR];
    const { v } = admit(r);
    expect(v.findings.map((f) => f.code)).toContain(AdmissionDenial.LastAuthorUnknown);
  });

  it('restores last-author when someone edits only the annotation', () => {
    const r = withApproval(() => undefined);
    const obj = structuredClone(r.request.oldObject) as Json;
    (dig(obj, 'metadata', 'annotations') as Json)[ANNOTATION_LAST_AUTHOR] = 'someone-else';
    const review = withObject(r, obj);
    const { m, v, patched } = admit(review);
    expect(dig(patched, 'metadata', 'annotations', ANNOTATION_LAST_AUTHOR)).toBe(
      'alice@corp.example',
    );
    expect(m.decision).toBe('patched');
    expect(v.decision).toBe('allowed');
    // Without the mutating webhook the validating side catches it.
    expect(validateReview(review, snapshot, config).findings.map((f) => f.code)).toEqual([
      AdmissionDenial.LastAuthorTampered,
    ]);
  });

  it('removes a last-author annotation that did not exist before', () => {
    const r = fixture('policy-update-approve.json');
    const old = structuredClone(r.request.oldObject) as Json;
    delete (dig(old, 'metadata', 'annotations') as Json)[ANNOTATION_LAST_AUTHOR];
    const obj = structuredClone(old);
    (dig(obj, 'metadata', 'annotations') as Json)[ANNOTATION_LAST_AUTHOR] = 'bob@corp.example';
    const { patched } = admit({ ...r, request: { ...r.request, object: obj, oldObject: old } });
    expect(dig(patched, 'metadata', 'annotations', ANNOTATION_LAST_AUTHOR)).toBeUndefined();
  });

  it('a spec edit keeps an old approval but it no longer verifies (ApprovalVoided)', () => {
    const r = fixture('policy-update-spec-and-approval.json');
    const obj = structuredClone(r.request.object) as Json;
    const old = structuredClone(r.request.oldObject) as Json;
    // Both carry the same approval: unchanged by this request.
    (dig(old, 'metadata', 'annotations') as Json)['erpguard.io/approval'] = (
      dig(obj, 'metadata', 'annotations') as Json
    )['erpguard.io/approval'];
    const { v, patched } = admit({ ...r, request: { ...r.request, object: obj, oldObject: old } });
    expect(v.decision).toBe('allowed');
    expect(dig(patched, 'metadata', 'annotations', ANNOTATION_LAST_AUTHOR)).toBe(
      'carol@corp.example',
    );
  });

  it('reports semantic errors with field paths', () => {
    const r = fixture('policy-create.json');
    const obj = structuredClone(r.request.object) as Json;
    (obj['spec'] as Json)['rules'] = [{ methods: ['FETCH'], paths: ['no-slash'] }];
    const { v } = admit(withObject(r, obj));
    expect(v.response.status?.code).toBe(422);
    expect(v.findings.every((f) => f.code === AdmissionDenial.PolicyInvalid)).toBe(true);
    expect(v.findings.map((f) => f.field)).toEqual(
      expect.arrayContaining(['spec.rules[0].methods[0]']),
    );
  });

  it('removing an approval is always allowed', () => {
    const r = fixture('policy-update-approve.json');
    const old = structuredClone(r.request.object) as Json;
    const obj = structuredClone(r.request.oldObject) as Json;
    const { v } = admit({
      ...r,
      request: { ...r.request, userInfo: mallory, object: obj, oldObject: old },
    });
    expect(v.decision).toBe('allowed');
  });
});

describe('admitOffline', () => {
  it('runs mutate then validate and returns the patched object', () => {
    const raw = JSON.parse(
      readFileSync(new URL('pod-create-replicaset.json', FIXTURES), 'utf8'),
    ) as unknown;
    const out = admitOffline(raw, snapshot, config);
    expect(out.response.allowed).toBe(true);
    expect(out.response.patch).toBeDefined();
    expect(out.review.apiVersion).toBe('admission.k8s.io/v1');
    expect(arr(out.patchedObject, 'spec', 'initContainers')[0]?.['name']).toBe(
      SIDECAR_CONTAINER_NAME,
    );
    expect(out.validation.decision).toBe('allowed');
  });

  it('reports a denial with its status', () => {
    const raw = JSON.parse(
      readFileSync(new URL('deployment-create-gaps.json', FIXTURES), 'utf8'),
    ) as unknown;
    const out = admitOffline(raw, snapshot, config);
    expect(out.response.allowed).toBe(false);
    expect(out.response.status?.code).toBe(403);
    expect(out.patchedObject).toBeUndefined();
  });

  it('throws InvalidDocument naming the field for a malformed review', () => {
    expect(() =>
      admitOffline(
        { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} },
        snapshot,
        config,
      ),
    ).toThrow(/request.uid/);
  });
});
