/**
 * The controller against a real kube-apiserver + etcd (test/harness/control-plane.ts): status
 * through server-side apply, Events, NetworkPolicies, dependents, the validUntil timer, leader
 * election between two controllers, TokenReview and the CA Secret store. The controllers run
 * in-process with the admin kubeconfig. Skipped when ERPGUARD_SKIP_CLUSTER=1.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fileURLToPath } from 'node:url';

import type {
  Condition,
  ErpIntegrationPolicy,
  ErpIntegrationPolicySpec,
} from '../../pkg/api/v1alpha1/index.js';
import { AdminServer } from '../../pkg/controller/admin-server.js';
import { Controller } from '../../pkg/controller/controller.js';
import { ErpguardError } from '../../pkg/errors/errors.js';
import { createKubeClients, loadKubeConfig } from '../../pkg/kube/client.js';
import type { KubeClients } from '../../pkg/kube/client.js';
import { SecretCaKeyStore } from '../../pkg/kube/secret-ca-store.js';
import { TokenReviewAuthenticator } from '../../pkg/kube/token-review.js';
import { specHash } from '../../pkg/policy/hash.js';
import { createMetricsRegistry } from '../../pkg/telemetry/metrics.js';
import type { Registry } from '../../pkg/telemetry/metrics.js';
import { startControlPlane } from '../harness/control-plane.js';
import { eventually, sleep } from '../harness/eventually.js';
import type { ControlPlane } from '../harness/control-plane.js';

const skip = process.env['ERPGUARD_SKIP_CLUSTER'] === '1';
const describeCluster = skip ? describe.skip : describe;

const CRD = fileURLToPath(
  new URL('../../crds/erpguard.io_erpintegrationpolicies.yaml', import.meta.url),
);
const OWN_NS = 'erpguard-system';
const NS = 'erp';
const REVIEWERS = { groups: ['erp-reviewers'] };
/** Short Lease timing so the take-over test takes seconds, not 15 s. */
const FAST_LEASE = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };

interface Running {
  controller: Controller;
  registry: Registry;
  admin: AdminServer;
  url: string;
  published: ErpIntegrationPolicy[][];
}

describeCluster('controller on a real API server', () => {
  let plane: ControlPlane | undefined;
  let clients: KubeClients;
  const running: Running[] = [];
  const cp = (): ControlPlane => {
    if (plane === undefined) throw new Error('control plane did not start');
    return plane;
  };

  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const res = await cp().kubectl(args, input !== undefined ? { input } : {});
    if (res.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${res.stderr}`);
    return res.stdout;
  };
  const apply = (obj: unknown): Promise<string> =>
    kubectl(['apply', '-f', '-'], JSON.stringify(obj));

  const getPolicy = async (name: string, ns = NS): Promise<ErpIntegrationPolicy> =>
    (await clients.custom.getNamespacedCustomObject({
      group: 'erpguard.io',
      version: 'v1alpha1',
      namespace: ns,
      plural: 'erpintegrationpolicies',
      name,
    })) as ErpIntegrationPolicy;

  const condition = (p: ErpIntegrationPolicy, type: string): Condition | undefined =>
    p.status?.conditions?.find((c) => c.type === type);

  /** Waits until the status reflects the current generation and `check` holds. */
  const waitPolicy = (
    name: string,
    check: (p: ErpIntegrationPolicy) => boolean,
    timeoutMs?: number,
  ): Promise<ErpIntegrationPolicy> =>
    eventually(
      `policy ${name}`,
      async () => {
        const p = await getPolicy(name);
        return p.status?.observedGeneration === p.metadata.generation && check(p) ? p : undefined;
      },
      timeoutMs,
    );

  const policy = (
    name: string,
    src: string,
    dst: string,
    extra: Partial<ErpIntegrationPolicySpec> = {},
  ): ErpIntegrationPolicy => ({
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: {
      name,
      namespace: NS,
      annotations: { 'erpguard.io/last-author': 'bob@corp.example' },
    },
    spec: {
      source: { module: src },
      destination: { module: dst },
      rules: [{ methods: ['GET'], paths: ['/api/v1/customers/{id}'] }],
      rateLimit: { requestsPerSecond: 50, burst: 100 },
      certificateTTL: '1h',
      validUntil: new Date(Date.now() + 90 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      ...extra,
    },
  });

  /** Sets the approval annotation the way `kubectl erpguard approve` will (no webhook yet). */
  const approve = async (name: string, by = 'alice@corp.example'): Promise<void> => {
    const p = await getPolicy(name);
    const approval = {
      by,
      groups: ['erp-reviewers'],
      at: new Date().toISOString(),
      specHash: specHash(p.spec),
    };
    await kubectl([
      '-n',
      NS,
      'annotate',
      '--overwrite',
      `eip/${name}`,
      `erpguard.io/approval=${JSON.stringify(approval)}`,
    ]);
  };

  const networkPolicy = async (name: string, ns = NS): Promise<Record<string, unknown> | null> => {
    const res = await cp().kubectl(['-n', ns, 'get', 'networkpolicy', name, '-o', 'json']);
    if (res.code !== 0) {
      if (res.stderr.includes('NotFound')) return null;
      throw new Error(res.stderr);
    }
    return JSON.parse(res.stdout) as Record<string, unknown>;
  };
  const allowedSources = (np: Record<string, unknown> | null): string[] | null => {
    if (np === null) return null;
    const spec = np['spec'] as {
      ingress?: { from?: { podSelector?: { matchExpressions?: { values: string[] }[] } }[] }[];
    };
    return (spec.ingress ?? []).flatMap((r) =>
      (r.from ?? []).flatMap((f) => f.podSelector?.matchExpressions?.[0]?.values ?? []),
    );
  };

  const metric = async (r: Running, name: string, labels = ''): Promise<number> => {
    const text = await (await fetch(`${r.url}/metrics`)).text();
    const line = text
      .split('\n')
      .find(
        (l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)),
      );
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };

  async function startController(identity: string): Promise<Running> {
    const registry = createMetricsRegistry();
    const controller = new Controller({
      clients,
      registry,
      namespace: OWN_NS,
      reviewers: REVIEWERS,
      identity,
      leaderElection: FAST_LEASE,
      resyncPeriodMs: 60_000,
      networkPolicyDebounceMs: 50,
    });
    const published: ErpIntegrationPolicy[][] = [];
    controller.onVerifiedPoliciesChanged((ps) => published.push([...ps]));
    const admin = new AdminServer({ registry, port: 0 });
    admin.addReadinessCheck('caches', () => controller.notReady());
    const addr = await admin.listen();
    controller.start();
    const r = { controller, registry, admin, url: `http://127.0.0.1:${addr.port}`, published };
    running.push(r);
    return r;
  }

  async function stopController(r: Running): Promise<void> {
    await r.controller.stop(5_000);
    await r.admin.close();
    running.splice(running.indexOf(r), 1);
  }

  let main: Running;

  beforeAll(async () => {
    plane = await startControlPlane();
    clients = createKubeClients(loadKubeConfig({ kubeconfigPath: cp().kubeconfigPath }));
    await kubectl(['apply', '-f', CRD]);
    await kubectl([
      'wait',
      '--for=condition=Established',
      'crd/erpintegrationpolicies.erpguard.io',
      '--timeout=60s',
    ]);
    await kubectl(['create', 'namespace', OWN_NS]);
    await kubectl(['create', 'namespace', NS]);
    await kubectl(['label', 'namespace', NS, 'erpguard.io/enforce=true']);
    await kubectl(['create', 'namespace', 'sales']);
    await kubectl(['label', 'namespace', 'sales', 'erpguard.io/enforce=true']);
    main = await startController('controller-a');
    // /readyz turns 200 only after every cache synced.
    await eventually('controller ready', async () =>
      (await fetch(`${main.url}/readyz`)).status === 200 ? true : undefined,
    );
    await main.controller.started;
    await eventually(
      'leader',
      () => Promise.resolve(main.controller.isLeader() ? true : undefined),
      10_000,
    );
  }, 60 * 60_000);

  afterAll(async () => {
    for (const r of [...running]) await stopController(r);
    clients.close();
    await plane?.stop();
  }, 60_000);

  it('writes Verified and Ready with observedGeneration and the spec hash', async () => {
    await apply(policy('crm-reads-customers', 'crm', 'finance'));
    const p = await waitPolicy(
      'crm-reads-customers',
      (x) => condition(x, 'Verified') !== undefined,
    );
    expect(p.status?.specHash).toBe(specHash(p.spec));
    expect(condition(p, 'Verified')).toMatchObject({
      status: 'False',
      reason: 'NotApproved',
      observedGeneration: p.metadata.generation,
    });
    expect(condition(p, 'Ready')).toMatchObject({ status: 'False', reason: 'NotVerified' });
    // Written under the fixed field manager, through the status subresource.
    const raw = JSON.parse(
      await kubectl([
        '-n',
        NS,
        'get',
        'eip',
        'crm-reads-customers',
        '-o',
        'json',
        '--show-managed-fields',
      ]),
    ) as {
      metadata: { managedFields: { manager: string; subresource?: string; operation: string }[] };
    };
    expect(raw.metadata.managedFields).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          manager: 'erpguard-controller',
          subresource: 'status',
          operation: 'Apply',
        }),
      ]),
    );
  });

  it('an approval with the right spec hash makes it Verified=True, Approved, Ready, with an Event', async () => {
    await approve('crm-reads-customers');
    const p = await waitPolicy(
      'crm-reads-customers',
      (x) => condition(x, 'Verified')?.status === 'True',
    );
    expect(condition(p, 'Verified')?.reason).toBe('Approved');
    expect(p.status?.approval).toMatchObject({
      by: 'alice@corp.example',
      specHash: p.status?.specHash,
    });
    await waitPolicy('crm-reads-customers', (x) => condition(x, 'Ready')?.status === 'True');
    expect(main.published[main.published.length - 1]?.map((x) => x.metadata.name)).toContain(
      'crm-reads-customers',
    );

    const events = await eventually('Approved event', async () => {
      const list = JSON.parse(
        await kubectl(['-n', NS, 'get', 'events.events.k8s.io', '-o', 'json']),
      ) as {
        items: {
          reason: string;
          type: string;
          regarding: { name: string; kind: string };
          reportingController: string;
        }[];
      };
      const mine = list.items.filter((e) => e.regarding.name === 'crm-reads-customers');
      return mine.some((e) => e.reason === 'Approved') ? mine : undefined;
    });
    expect(events.map((e) => `${e.type}/${e.reason}`).sort()).toEqual([
      'Normal/Approved',
      'Warning/NotApproved',
    ]);
    expect(events[0]?.reportingController).toBe('erpguard.io/controller');
    expect(events[0]?.regarding.kind).toBe('ErpIntegrationPolicy');
  });

  it('opens the destination NetworkPolicy to the verified source, and only to it', async () => {
    const np = await eventually('erpguard-finance open to crm', async () => {
      const n = await networkPolicy('erpguard-finance');
      return n !== null && allowedSources(n)?.includes('crm') === true ? n : undefined;
    });
    expect(np['metadata']).toMatchObject({
      labels: { 'app.kubernetes.io/managed-by': 'erpguard' },
    });
    expect((np['metadata'] as { ownerReferences?: unknown }).ownerReferences).toBeUndefined();
    expect(np['spec']).toEqual({
      podSelector: { matchLabels: { 'erpguard.io/module': 'finance' } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          ports: [{ protocol: 'TCP', port: 15443 }],
          from: [
            {
              podSelector: {
                matchExpressions: [{ key: 'erpguard.io/module', operator: 'In', values: ['crm'] }],
              },
            },
          ],
        },
      ],
    });
    // The source module itself has no verified inbound policy: deny-all.
    const crm = await eventually('erpguard-crm', () =>
      networkPolicy('erpguard-crm').then((n) => n ?? undefined),
    );
    expect(allowedSources(crm)).toEqual([]);
  });

  it('a spec edit voids the approval; lastTransitionTime moves only on a flip', async () => {
    const before = await getPolicy('crm-reads-customers');
    const verifiedTrue = condition(before, 'Verified');
    await kubectl([
      '-n',
      NS,
      'patch',
      'eip',
      'crm-reads-customers',
      '--type=merge',
      '-p',
      '{"spec":{"rateLimit":{"requestsPerSecond":40,"burst":80}}}',
    ]);
    const voided = await waitPolicy(
      'crm-reads-customers',
      (x) =>
        (x.metadata.generation ?? 0) > (before.metadata.generation ?? 0) &&
        condition(x, 'Verified')?.status === 'False',
    );
    const v1 = condition(voided, 'Verified');
    expect(v1).toMatchObject({
      reason: 'ApprovalVoided',
      observedGeneration: voided.metadata.generation,
    });
    expect(Date.parse(v1?.lastTransitionTime ?? '')).toBeGreaterThanOrEqual(
      Date.parse(verifiedTrue?.lastTransitionTime ?? ''),
    );
    expect(v1?.lastTransitionTime).not.toBe(verifiedTrue?.lastTransitionTime);
    expect(condition(voided, 'Ready')).toMatchObject({ status: 'False', reason: 'NotVerified' });

    // Another edit: still False with the same reason, so the transition time stays.
    await sleep(1_100); // make a moved timestamp observable (RFC 3339 has second precision)
    await kubectl([
      '-n',
      NS,
      'patch',
      'eip',
      'crm-reads-customers',
      '--type=merge',
      '-p',
      '{"spec":{"rateLimit":{"requestsPerSecond":30,"burst":60}}}',
    ]);
    const again = await waitPolicy(
      'crm-reads-customers',
      (x) => (x.metadata.generation ?? 0) > (voided.metadata.generation ?? 0),
    );
    expect(condition(again, 'Verified')).toMatchObject({
      status: 'False',
      reason: 'ApprovalVoided',
    });
    expect(condition(again, 'Verified')?.lastTransitionTime).toBe(v1?.lastTransitionTime);

    // The NetworkPolicy follows: finance is closed again.
    await eventually('erpguard-finance closed', async () =>
      allowedSources(await networkPolicy('erpguard-finance'))?.length === 0 ? true : undefined,
    );
    // Re-approval of the new spec opens it again.
    await approve('crm-reads-customers');
    await waitPolicy('crm-reads-customers', (x) => condition(x, 'Verified')?.status === 'True');
    await eventually('erpguard-finance reopened', async () =>
      allowedSources(await networkPolicy('erpguard-finance'))?.includes('crm') === true
        ? true
        : undefined,
    );
  });

  it('rejects self-approval and approvals by non-reviewers', async () => {
    await apply(policy('wms-books-receipts', 'wms', 'finance'));
    await waitPolicy(
      'wms-books-receipts',
      (x) => condition(x, 'Verified')?.reason === 'NotApproved',
    );
    await approve('wms-books-receipts', 'bob@corp.example'); // bob is the last author
    await waitPolicy(
      'wms-books-receipts',
      (x) => condition(x, 'Verified')?.reason === 'SelfApproval',
    );
    const p = await getPolicy('wms-books-receipts');
    const approval = {
      by: 'mallory',
      groups: ['developers'],
      at: new Date().toISOString(),
      specHash: specHash(p.spec),
    };
    await kubectl([
      '-n',
      NS,
      'annotate',
      '--overwrite',
      'eip/wms-books-receipts',
      `erpguard.io/approval=${JSON.stringify(approval)}`,
    ]);
    await waitPolicy(
      'wms-books-receipts',
      (x) => condition(x, 'Verified')?.reason === 'ApproverNotReviewer',
    );
    // wms is not let into finance.
    expect(allowedSources(await networkPolicy('erpguard-finance'))).toEqual(['crm']);
  });

  it('lists dependent workloads and keeps the list current', async () => {
    const deployment = (name: string, module: string, integrations: string) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: NS },
      spec: {
        selector: { matchLabels: { app: name } },
        template: {
          metadata: {
            labels: { app: name, 'erpguard.io/module': module },
            annotations: { 'erpguard.io/integrations': integrations },
          },
          spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1' }] },
        },
      },
    });
    await apply(deployment('crm-web', 'crm', 'finance,inventory'));
    await apply(deployment('crm-reports', 'crm', 'inventory'));
    const p = await waitPolicy(
      'crm-reads-customers',
      (x) => (x.status?.dependents ?? []).length > 0,
    );
    expect(p.status?.dependents).toEqual([{ kind: 'Deployment', name: 'crm-web', namespace: NS }]);
    await kubectl(['-n', NS, 'delete', 'deployment', 'crm-web']);
    await waitPolicy('crm-reads-customers', (x) => x.status?.dependents === undefined);
  });

  it('gives modules seen only on workloads a deny-all NetworkPolicy and removes it when they go', async () => {
    await apply({
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'bi-export', namespace: NS },
      spec: {
        schedule: '0 3 * * *',
        jobTemplate: {
          spec: {
            template: {
              metadata: { labels: { 'erpguard.io/module': 'bi' } },
              spec: {
                restartPolicy: 'Never',
                containers: [{ name: 'x', image: 'registry.invalid/x:1' }],
              },
            },
          },
        },
      },
    });
    const np = await eventually('erpguard-bi', () =>
      networkPolicy('erpguard-bi').then((n) => n ?? undefined),
    );
    expect((np['spec'] as { ingress?: unknown }).ingress).toBeUndefined();
    await kubectl(['-n', NS, 'delete', 'cronjob', 'bi-export']);
    await eventually('erpguard-bi gone', async () =>
      (await networkPolicy('erpguard-bi')) === null ? true : undefined,
    );
  });

  it('repairs hand edits of its NetworkPolicies and never touches foreign ones', async () => {
    await kubectl([
      '-n',
      NS,
      'patch',
      'networkpolicy',
      'erpguard-finance',
      '--type=json',
      '-p',
      '[{"op":"add","path":"/spec/ingress/0/ports/-","value":{"protocol":"TCP","port":8080}}]',
    ]);
    await eventually('erpguard-finance repaired', async () => {
      const n = await networkPolicy('erpguard-finance');
      return JSON.stringify(n?.['spec']).includes('8080') ? undefined : true;
    });
    await apply({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'erpguard-inventory', namespace: NS, labels: { team: 'inventory' } },
      spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] },
    });
    await apply(policy('crm-reads-stock', 'crm', 'inventory'));
    await waitPolicy('crm-reads-stock', (x) => condition(x, 'Verified') !== undefined);
    await sleep(1_000);
    const foreign = await networkPolicy('erpguard-inventory');
    expect((foreign?.['metadata'] as { labels?: Record<string, string> }).labels).toEqual({
      team: 'inventory',
    });
    expect(foreign?.['spec']).toEqual({ podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] });
  });

  it('cross-namespace sources are admitted by namespace name', async () => {
    await apply(
      policy('sales-crm-reads-finance', 'crm', 'finance', {
        source: { module: 'crm', namespace: 'sales' },
      }),
    );
    await approve('sales-crm-reads-finance');
    await waitPolicy('sales-crm-reads-finance', (x) => condition(x, 'Verified')?.status === 'True');
    const np = await eventually('finance open to sales/crm', async () => {
      const n = await networkPolicy('erpguard-finance');
      return n !== null && JSON.stringify(n['spec']).includes('"sales"') ? n : undefined;
    });
    const from = (np['spec'] as { ingress: { from: unknown[] }[] }).ingress[0]?.from;
    expect(from).toContainEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'sales' } },
      podSelector: {
        matchExpressions: [{ key: 'erpguard.io/module', operator: 'In', values: ['crm'] }],
      },
    });
  });

  it('re-checks validUntil on a timer: Verified turns Expired without any edit', async () => {
    const until = new Date(Date.now() + 6_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await apply(policy('short-lived', 'crm', 'wms', { validUntil: until }));
    await waitPolicy('short-lived', (x) => condition(x, 'Verified') !== undefined);
    await approve('short-lived');
    await waitPolicy('short-lived', (x) => condition(x, 'Verified')?.status === 'True');
    const expired = await waitPolicy(
      'short-lived',
      (x) => condition(x, 'Verified')?.reason === 'Expired',
      20_000,
    );
    expect(
      Date.parse(condition(expired, 'Verified')?.lastTransitionTime ?? ''),
    ).toBeGreaterThanOrEqual(Date.parse(until));
  });

  it('authenticates projected ServiceAccount tokens with TokenReview', async () => {
    await kubectl(['-n', NS, 'create', 'serviceaccount', 'finance']);
    await kubectl(['-n', NS, 'label', 'serviceaccount', 'finance', 'erpguard.io/module=finance']);
    const token = (
      await kubectl([
        '-n',
        NS,
        'create',
        'token',
        'finance',
        '--audience',
        'erpguard',
        '--duration',
        '10m',
      ])
    ).trim();
    const auth = new TokenReviewAuthenticator(clients, {
      serviceAccounts: main.controller.informers.serviceAccounts,
    });
    expect(await auth.authenticate(token)).toEqual({
      namespace: NS,
      serviceAccount: 'finance',
      module: 'finance',
    });
    const apiToken = (
      await kubectl(['-n', NS, 'create', 'token', 'finance', '--duration', '10m'])
    ).trim();
    expect(await auth.authenticate(apiToken)).toBeNull(); // the API server's audience, not ours
    expect(await auth.authenticate(`${token.slice(0, -4)}AAAA`)).toBeNull(); // bad signature
  });

  it('stores the CA in a Secret with optimistic concurrency', async () => {
    const a = new SecretCaKeyStore(clients, OWN_NS, 'erpguard-ca-test');
    const b = new SecretCaKeyStore(clients, OWN_NS, 'erpguard-ca-test');
    expect(await a.load()).toBeNull();
    expect(await b.load()).toBeNull();
    const material = {
      issuerChainPem: 'CHAIN\n',
      issuerKeyPem: 'KEY\n',
      trustBundlePem: 'BUNDLE\n',
    };
    await a.save(material);
    // b also saw "nothing stored" and would create a second root: refused.
    const err = await b.save({ ...material, issuerKeyPem: 'OTHER\n' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErpguardError);
    expect((err as ErpguardError).retryable).toBe(true);
    expect(await b.load()).toEqual(material);
    const rotated = { ...material, pending: { certificatePem: 'NEXT\n', keyPem: 'NEXTKEY\n' } };
    await b.save(rotated);
    expect(await a.load()).toEqual(rotated);
    const secret = JSON.parse(
      await kubectl(['-n', OWN_NS, 'get', 'secret', 'erpguard-ca-test', '-o', 'json']),
    ) as {
      type: string;
      data: Record<string, string>;
    };
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(Object.keys(secret.data).sort()).toEqual([
      'ca.crt',
      'next.crt',
      'next.key',
      'tls.crt',
      'tls.key',
    ]);
  });

  it('with two controllers only the leader writes; the other takes over when it stops', async () => {
    const second = await startController('controller-b');
    await second.controller.started;
    expect(main.controller.isLeader()).toBe(true);
    expect(second.controller.isLeader()).toBe(false);
    const lease = JSON.parse(
      await kubectl(['-n', OWN_NS, 'get', 'lease', 'erpguard-controller', '-o', 'json']),
    ) as {
      spec: { holderIdentity: string; leaseDurationSeconds: number };
    };
    expect(lease.spec).toMatchObject({ holderIdentity: 'controller-a', leaseDurationSeconds: 4 });
    expect(await metric(main, 'erpguard_leader')).toBe(1);
    expect(await metric(second, 'erpguard_leader')).toBe(0);

    // A new policy: both compute its status, only the leader writes it.
    const writesBefore = await metric(main, 'erpguard_status_writes_total');
    await apply(policy('bi-reads-ledger', 'bi', 'finance'));
    await waitPolicy('bi-reads-ledger', (x) => condition(x, 'Verified') !== undefined);
    await eventually('follower skipped a write', async () =>
      (await metric(second, 'erpguard_leader_writes_skipped_total', '{kind="status"}')) > 0
        ? true
        : undefined,
    );
    expect(await metric(main, 'erpguard_status_writes_total')).toBeGreaterThan(writesBefore);
    expect(await metric(second, 'erpguard_status_writes_total')).toBe(0);
    expect(await metric(second, 'erpguard_networkpolicy_writes_total', '{op="apply"}')).toBe(0);
    // Every replica keeps the verified set (it serves sidecars too).
    expect(
      second.controller
        .verifiedPolicies()
        .map((p) => p.metadata.name)
        .sort(),
    ).toEqual(
      main.controller
        .verifiedPolicies()
        .map((p) => p.metadata.name)
        .sort(),
    );

    // The leader stops and releases the Lease; the follower takes over and writes.
    await stopController(main);
    await eventually(
      'controller-b leads',
      () => Promise.resolve(second.controller.isLeader() ? true : undefined),
      10_000,
    );
    await approve('bi-reads-ledger');
    await waitPolicy('bi-reads-ledger', (x) => condition(x, 'Verified')?.status === 'True');
    expect(await metric(second, 'erpguard_status_writes_total')).toBeGreaterThan(0);
    expect(await metric(second, 'erpguard_leader')).toBe(1);
  });
});
