/**
 * The webhook behind a real kube-apiserver (test/harness/control-plane.ts): webhook
 * configurations pointing at https://127.0.0.1 with a real CA bundle, so every AdmissionReview
 * here is the API server's own, defaulting and patch application included. Users are
 * certificate users in groups (alice: developer, bob: reviewer). The snapshot is refreshed from
 * the API server with kubectl before each step (in the product, informers do this).
 *
 * Skipped when ERPGUARD_SKIP_CLUSTER=1. The first run on a machine may build the binaries.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { AdmissionConfig, Snapshot } from '../../pkg/admission/index.js';
import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { specHash } from '../../pkg/policy/hash.js';
import { verifyPolicy } from '../../pkg/policy/verify.js';
import { silentLogger } from '../../pkg/telemetry/logger.js';
import { createWebhookServer } from '../../pkg/webhook/index.js';
import type { WebhookServer } from '../../pkg/webhook/index.js';
import { startControlPlane } from '../harness/control-plane.js';
import type { CommandResult, ControlPlane } from '../harness/control-plane.js';

const run = promisify(execFile);
type Json = Record<string, unknown>;

const skip = process.env['ERPGUARD_SKIP_CLUSTER'] === '1';
if (skip) {
  // eslint-disable-next-line no-console -- the skip must be visible in the test output
  console.warn('ERPGUARD_SKIP_CLUSTER=1: skipping the webhook tests against kube-apiserver');
}
const describeCluster = skip ? describe.skip : describe;

const NS = 'erp';
const REVIEWERS = 'erp-reviewers';
const config: Omit<AdmissionConfig, 'now'> = {
  reviewers: { groups: [REVIEWERS] },
  ownNamespace: 'erpguard-system',
  sidecar: { image: 'registry.example/erpguard/proxy:0.1.0' },
  trustDomain: 'cluster.local',
  controllerAddress: 'erpguard-controller.erpguard-system.svc:15012',
};

let plane: ControlPlane | undefined;
let server: WebhookServer | undefined;
let dir = '';
let snapshot: Snapshot = { policies: [], serviceAccounts: [], namespaces: [] };

const cp = (): ControlPlane => {
  if (plane === undefined) throw new Error('control plane did not start (see beforeAll)');
  return plane;
};

async function kubectl(
  args: readonly string[],
  opts: { input?: string; user?: string } = {},
): Promise<CommandResult> {
  return cp().kubectl(args, {
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.user !== undefined ? { kubeconfig: cp().userKubeconfig(opts.user) } : {}),
  });
}

async function ok(
  args: readonly string[],
  opts: { input?: string; user?: string } = {},
): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function getJson(args: readonly string[]): Promise<Json> {
  return JSON.parse(await ok([...args, '-o', 'json'])) as Json;
}

/** Rebuilds the snapshot from the API server (what the informers do in the product). */
async function refresh(): Promise<void> {
  const items = async (what: string): Promise<Json[]> =>
    (await getJson(['get', what, '-A']))['items'] as Json[];
  const meta = (o: Json): Json => o['metadata'] as Json;
  const labels = (o: Json): Record<string, string> =>
    (meta(o)['labels'] as Record<string, string> | undefined) ?? {};
  const [namespaces, sas, policies] = await Promise.all([
    items('namespaces'),
    items('serviceaccounts'),
    items('erpintegrationpolicies'),
  ]);
  snapshot = {
    namespaces: namespaces.map((n) => ({ name: String(meta(n)['name']), labels: labels(n) })),
    serviceAccounts: sas.map((s) => {
      const module = labels(s)['erpguard.io/module'];
      return {
        namespace: String(meta(s)['namespace']),
        name: String(meta(s)['name']),
        ...(module !== undefined ? { module } : {}),
      };
    }),
    policies: policies as unknown as ErpIntegrationPolicy[],
  };
}

function pod(
  name: string,
  extra: {
    module?: string;
    integrations?: string;
    namespace?: string;
    generateName?: boolean;
  } = {},
): string {
  const metadata: Json = {
    [extra.generateName === true ? 'generateName' : 'name']: name,
    namespace: extra.namespace ?? NS,
    labels: extra.module !== undefined ? { 'erpguard.io/module': extra.module } : {},
    annotations:
      extra.integrations !== undefined ? { 'erpguard.io/integrations': extra.integrations } : {},
  };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata,
    spec: {
      serviceAccountName: extra.module ?? 'default',
      containers: [
        { name: 'app', image: 'registry.example/erp/app:1.0.0', ports: [{ containerPort: 8080 }] },
      ],
    },
  });
}

function policy(dst: string): string {
  return JSON.stringify({
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: { name: `crm-to-${dst}`, namespace: NS },
    spec: {
      source: { module: 'crm' },
      destination: { module: dst },
      rules: [{ methods: ['GET'], paths: ['/api/v1/customers/{id}'] }],
      rateLimit: { requestsPerSecond: 20 },
      certificateTTL: '1h',
      validUntil: new Date(Date.now() + 90 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    },
  });
}

async function approve(name: string, user: string, hash: string): Promise<CommandResult> {
  const approval = JSON.stringify({ by: user, at: new Date().toISOString(), specHash: hash });
  return kubectl(
    [
      '-n',
      NS,
      'annotate',
      '--overwrite',
      `erpintegrationpolicy/${name}`,
      `erpguard.io/approval=${approval}`,
    ],
    { user },
  );
}

function webhookConfigurations(port: number, caBundle: string): string {
  const common = {
    failurePolicy: 'Fail',
    sideEffects: 'NoneOnDryRun',
    matchPolicy: 'Equivalent',
    admissionReviewVersions: ['v1'],
  };
  const scoped = {
    namespaceSelector: {
      matchExpressions: [
        { key: 'erpguard.io/enforce', operator: 'In', values: ['true', 'audit'] },
        {
          key: 'kubernetes.io/metadata.name',
          operator: 'NotIn',
          values: ['kube-system', 'kube-public', 'kube-node-lease', 'erpguard-system'],
        },
      ],
    },
  };
  const client = (path: string): Json => ({ url: `https://127.0.0.1:${port}${path}`, caBundle });
  const policies = {
    apiGroups: ['erpguard.io'],
    apiVersions: ['v1alpha1'],
    operations: ['CREATE', 'UPDATE'],
    resources: ['erpintegrationpolicies'],
  };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        metadata: { name: 'erpguard-test' },
        webhooks: [
          {
            name: 'mutate.erpguard.io',
            clientConfig: client('/mutate'),
            rules: [
              { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] },
            ],
            ...scoped,
            ...common,
            timeoutSeconds: 2,
            reinvocationPolicy: 'IfNeeded',
          },
          {
            name: 'mutate-policies.erpguard.io',
            clientConfig: client('/mutate'),
            rules: [policies],
            ...common,
            timeoutSeconds: 2,
            reinvocationPolicy: 'IfNeeded',
          },
        ],
      },
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name: 'erpguard-test' },
        webhooks: [
          {
            name: 'validate.erpguard.io',
            clientConfig: client('/validate'),
            rules: [
              {
                apiGroups: [''],
                apiVersions: ['v1'],
                operations: ['CREATE', 'UPDATE'],
                resources: ['pods', 'pods/ephemeralcontainers'],
              },
              {
                apiGroups: ['apps'],
                apiVersions: ['v1'],
                operations: ['CREATE', 'UPDATE'],
                resources: ['deployments', 'statefulsets', 'daemonsets', 'replicasets'],
              },
              {
                apiGroups: ['batch'],
                apiVersions: ['v1'],
                operations: ['CREATE', 'UPDATE'],
                resources: ['jobs', 'cronjobs'],
              },
            ],
            ...scoped,
            ...common,
            timeoutSeconds: 3,
          },
          {
            name: 'validate-policies.erpguard.io',
            clientConfig: client('/validate'),
            rules: [policies],
            ...common,
            timeoutSeconds: 3,
          },
        ],
      },
    ],
  });
}

describeCluster('webhook behind kube-apiserver', () => {
  beforeAll(async () => {
    plane = await startControlPlane();
    dir = await mkdtemp(join(tmpdir(), 'erpguard-webhook-apiserver-'));
    const p = (n: string): string => join(dir, n);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await run('openssl', [
      'req',
      '-x509',
      ...ec,
      '-days',
      '1',
      '-subj',
      '/CN=webhook-ca',
      '-keyout',
      p('ca.key'),
      '-out',
      p('ca.crt'),
    ]);
    await run('openssl', [
      'req',
      ...ec,
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      p('tls.key'),
      '-out',
      p('tls.csr'),
    ]);
    await writeFile(p('ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      p('tls.csr'),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      p('ext'),
      '-out',
      p('tls.crt'),
    ]);
    server = await createWebhookServer({
      tlsCertFile: p('tls.crt'),
      tlsKeyFile: p('tls.key'),
      snapshotSource: () => snapshot,
      config,
      logger: silentLogger(),
      tlsReloadPollMs: 0,
    });
    await ok([
      'apply',
      '-f',
      join(process.cwd(), 'crds', 'erpguard.io_erpintegrationpolicies.yaml'),
    ]);
    await ok([
      'wait',
      '--for=condition=established',
      '--timeout=60s',
      'crd/erpintegrationpolicies.erpguard.io',
    ]);
    await ok(['create', 'namespace', NS]);
    await ok(['label', 'namespace', NS, 'erpguard.io/enforce=true']);
    await ok(['-n', NS, 'create', 'serviceaccount', 'crm']);
    await ok(['-n', NS, 'label', 'serviceaccount', 'crm', 'erpguard.io/module=crm']);
    for (const [user, group] of [
      ['alice', 'erp-developers'],
      ['bob', REVIEWERS],
    ] as const) {
      await cp().createUserCredentials(user, [group]);
      await ok([
        'create',
        'clusterrolebinding',
        `${user}-admin`,
        '--clusterrole=cluster-admin',
        `--user=${user}`,
      ]);
    }
    const caBundle = (await readFile(p('ca.crt'))).toString('base64');
    await ok(['apply', '-f', '-'], { input: webhookConfigurations(server.port, caBundle) });
    await refresh();
  }, 60 * 60_000);

  afterAll(async () => {
    await plane?.stop();
    await server?.close();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('refuses a module Pod whose integration has no verified policy, naming the integration', async () => {
    const r = await kubectl(['create', '-f', '-'], {
      input: pod('crm-early', { module: 'crm', integrations: 'finance' }),
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/admission webhook "validate.erpguard.io" denied the request/);
    expect(r.stderr).toMatch(/IntegrationNotVerified: finance: NoPolicy/);
  });

  it('records the author and accepts an approval only from another reviewer', async () => {
    await ok(['apply', '-f', '-'], { input: policy('finance'), user: 'alice' });
    const stored = (await getJson([
      '-n',
      NS,
      'get',
      'erpintegrationpolicy',
      'crm-to-finance',
    ])) as unknown as ErpIntegrationPolicy;
    expect(stored.metadata.annotations?.['erpguard.io/last-author']).toBe('alice');
    const hash = specHash(stored.spec);

    const self = await approve('crm-to-finance', 'alice', hash);
    expect(self.code).not.toBe(0);
    expect(self.stderr).toMatch(/ApproverNotReviewer/);
    expect(self.stderr).toMatch(/SelfApproval/);

    const forged = await kubectl(
      [
        '-n',
        NS,
        'annotate',
        '--overwrite',
        'erpintegrationpolicy/crm-to-finance',
        `erpguard.io/last-author=bob`,
      ],
      { user: 'alice' },
    );
    expect(forged.code).toBe(0); // accepted, but the mutating webhook puts the real author back
    const after = (await getJson([
      '-n',
      NS,
      'get',
      'erpintegrationpolicy',
      'crm-to-finance',
    ])) as unknown as ErpIntegrationPolicy;
    expect(after.metadata.annotations?.['erpguard.io/last-author']).toBe('alice');

    const stale = await approve('crm-to-finance', 'bob', `sha256:${'0'.repeat(64)}`);
    expect(stale.stderr).toMatch(/ApprovalHashMismatch/);

    expect((await approve('crm-to-finance', 'bob', hash)).code).toBe(0);
    const approved = (await getJson([
      '-n',
      NS,
      'get',
      'erpintegrationpolicy',
      'crm-to-finance',
    ])) as unknown as ErpIntegrationPolicy;
    const approval = JSON.parse(
      approved.metadata.annotations?.['erpguard.io/approval'] ?? '{}',
    ) as Json;
    expect(approval['groups']).toEqual([REVIEWERS]);
    expect(verifyPolicy(approved, config.reviewers, new Date()).condition.reason).toBe('Approved');
  });

  it('injects the native sidecar and admits the Pod once its integration is verified', async () => {
    await refresh();
    await ok(['create', '-f', '-'], {
      input: pod('crm-api', { module: 'crm', integrations: 'finance' }),
    });
    const stored = await getJson(['-n', NS, 'get', 'pod', 'crm-api']);
    const spec = stored['spec'] as Json;
    const init = spec['initContainers'] as Json[];
    expect(init.map((c) => c['name'])).toEqual(['erpguard-proxy']);
    expect(init[0]?.['restartPolicy']).toBe('Always');
    const volume = (spec['volumes'] as Json[]).find((v) => v['name'] === 'erpguard-token');
    expect(JSON.stringify(volume)).toMatch(/"audience":"erpguard"/);
    const env = ((spec['containers'] as Json[])[0]?.['env'] as Json[]).map((e) => e['name']);
    expect(env).toEqual(expect.arrayContaining(['HTTP_PROXY', 'http_proxy', 'NO_PROXY']));
    expect(((stored['metadata'] as Json)['annotations'] as Json)['erpguard.io/injected']).toBe(
      'true',
    );
  });

  it('injects Pods created with generateName', async () => {
    const out = await ok(['create', '-f', '-', '-o', 'json'], {
      input: pod('crm-worker-', { module: 'crm', generateName: true }),
    });
    const created = JSON.parse(out) as Json;
    expect(String((created['metadata'] as Json)['name'])).toMatch(/^crm-worker-[a-z0-9]{5}$/);
    expect(((created['spec'] as Json)['initContainers'] as Json[])[0]?.['name']).toBe(
      'erpguard-proxy',
    );
  });

  it('answers --dry-run=server like a real request and stores nothing', async () => {
    const out = await ok(['create', '--dry-run=server', '-f', '-', '-o', 'json'], {
      input: pod('crm-dry', { module: 'crm', integrations: 'finance' }),
    });
    expect(((JSON.parse(out) as Json)['spec'] as Json)['initContainers']).toBeDefined();
    expect((await kubectl(['-n', NS, 'get', 'pod', 'crm-dry'])).code).not.toBe(0);
    const denied = await kubectl(['create', '--dry-run=server', '-f', '-'], {
      input: pod('crm-dry2', { module: 'crm', integrations: 'wms' }),
    });
    expect(denied.stderr).toMatch(/wms: NoPolicy/);
  });

  it('refuses hostNetwork, opt-outs and Deployments with unverified integrations', async () => {
    const host = JSON.parse(pod('crm-host', { module: 'crm' })) as Json;
    (host['spec'] as Json)['hostNetwork'] = true;
    expect((await kubectl(['create', '-f', '-'], { input: JSON.stringify(host) })).stderr).toMatch(
      /HostNetwork/,
    );
    const optOut = JSON.parse(pod('crm-optout', { module: 'crm' })) as Json;
    ((optOut['metadata'] as Json)['annotations'] as Json)['erpguard.io/inject'] = 'false';
    expect(
      (await kubectl(['create', '-f', '-'], { input: JSON.stringify(optOut) })).stderr,
    ).toMatch(/OptOutRefused/);
    const dep = await kubectl([
      '-n',
      NS,
      'create',
      'deployment',
      'crm-reports',
      '--image=registry.example/erp/crm:1',
      '--dry-run=client',
      '-o',
      'json',
    ]);
    const d = JSON.parse(dep.stdout) as Json;
    const tpl = (d['spec'] as Json)['template'] as Json;
    (tpl['metadata'] as Json)['labels'] = { app: 'crm-reports', 'erpguard.io/module': 'crm' };
    (tpl['metadata'] as Json)['annotations'] = { 'erpguard.io/integrations': 'finance,bi' };
    (tpl['spec'] as Json)['serviceAccountName'] = 'crm';
    const r = await kubectl(['create', '-f', '-'], { input: JSON.stringify(d) });
    expect(r.stderr).toMatch(/bi: NoPolicy/);
    expect(r.stderr).not.toMatch(/finance:/);
  });

  it('refuses changing the injected sidecar and adding ephemeral containers', async () => {
    const swap = await kubectl([
      '-n',
      NS,
      'patch',
      'pod',
      'crm-api',
      '--type=json',
      '-p',
      JSON.stringify([
        { op: 'replace', path: '/spec/initContainers/0/image', value: 'attacker/noop:1' },
      ]),
    ]);
    expect(swap.code).not.toBe(0);
    expect(swap.stderr).toMatch(/SidecarTampered/);
    const debug = JSON.stringify({
      spec: {
        ephemeralContainers: [
          { name: 'debugger', image: 'busybox:1.36', targetContainerName: 'app' },
        ],
      },
    });
    const r = await kubectl([
      '-n',
      NS,
      'patch',
      'pod',
      'crm-api',
      '--subresource=ephemeralcontainers',
      '--type=strategic',
      '-p',
      debug,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/EphemeralContainerRefused/);
  });

  it('voids the approval on a spec edit, blocks new Pods, and never blocks DELETE', async () => {
    const edited = JSON.parse(policy('finance')) as Json;
    ((edited['spec'] as Json)['rules'] as Json[])[0] = {
      methods: ['GET', 'POST'],
      paths: ['/api/v1/customers/{id}'],
    };
    await ok(['apply', '-f', '-'], { input: JSON.stringify(edited), user: 'alice' });
    await refresh();
    const r = await kubectl(['create', '-f', '-'], {
      input: pod('crm-late', { module: 'crm', integrations: 'finance' }),
    });
    expect(r.stderr).toMatch(/finance: not verified; policy erp\/crm-to-finance ApprovalVoided/);
    expect((await kubectl(['-n', NS, 'delete', 'pod', 'crm-api', '--wait=false'])).code).toBe(0);
  });

  it('admits with warnings in an audit namespace, and still injects', async () => {
    await ok(['create', 'namespace', 'erp-audit']);
    await ok(['label', 'namespace', 'erp-audit', 'erpguard.io/enforce=audit']);
    await ok(['-n', 'erp-audit', 'create', 'serviceaccount', 'crm']);
    await ok(['-n', 'erp-audit', 'label', 'serviceaccount', 'crm', 'erpguard.io/module=crm']);
    await refresh();
    const r = await kubectl(['create', '-f', '-'], {
      input: pod('crm-audit', { module: 'crm', integrations: 'payroll', namespace: 'erp-audit' }),
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /Warning: erpguard audit \(would deny\): IntegrationNotVerified: payroll: NoPolicy/,
    );
    const stored = await getJson(['-n', 'erp-audit', 'get', 'pod', 'crm-audit']);
    expect(((stored['spec'] as Json)['initContainers'] as Json[])[0]?.['name']).toBe(
      'erpguard-proxy',
    );
  });

  it('leaves kube-system alone even for a module-labelled Pod', async () => {
    await ok(['create', '-f', '-'], {
      input: pod('sys', { module: 'crm', namespace: 'kube-system' }),
    });
    const stored = await getJson(['-n', 'kube-system', 'get', 'pod', 'sys']);
    expect((stored['spec'] as Json)['initContainers']).toBeUndefined();
  });
});
