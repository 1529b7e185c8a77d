/**
 * The whole product on a real kube-apiserver + etcd (test/harness/control-plane.ts): the chart
 * installed with `helm install --no-hooks`, the controller as a local child process
 * (`node dist/cmd/controller/main.js`: informers, status, NetworkPolicies, gRPC identity service
 * with TokenReview, admission webhook) reached by URL. The webhook runs in `self` certificate
 * mode: the controller creates its webhook CA in a Secret and patches caBundle into the chart's
 * webhook configurations, which were installed with a placeholder bundle.
 *
 * Users are certificate users: alice (reviewer), bob (policy author). Skipped when
 * ERPGUARD_SKIP_CLUSTER=1.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { loadAll } from 'js-yaml';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { buildCsr } from '../../pkg/ca/pkcs10.js';
import { spiffeIdOfCertificate } from '../../pkg/ca/spiffe.js';
import { clusterCommands, POLICY_COMMANDS, runCli } from '../../pkg/cli/main.js';
import { CliCluster } from '../../pkg/kube/cli-cluster.js';
import { methods, unary } from '../../pkg/proto/erpguard-proto.js';
import { channelCredentials, channelOptions } from '../../pkg/workload-identity/tls.js';
import { WorkloadIdentityClient } from '../../pkg/workload-identity/index.js';
import { startControlPlane } from '../harness/control-plane.js';
import { eventually } from '../harness/eventually.js';
import type { CommandResult, ControlPlane } from '../harness/control-plane.js';

const run = promisify(execFile);
type Json = Record<string, unknown>;

const skip = process.env['ERPGUARD_SKIP_CLUSTER'] === '1';
const describeCluster = skip ? describe.skip : describe;

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const OWN_NS = 'erpguard-system';
const NS = 'erp';
const RELEASE = 'erpguard';
const SAMPLES = join(ROOT, 'crds', 'samples', 'valid');

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function validUntil(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
}

interface ControllerProcess {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

describeCluster(
  'erpguard on a real API server (chart + controller process + webhook + gRPC)',
  () => {
    let plane: ControlPlane | undefined;
    let dir = '';
    let controller: ControllerProcess | undefined;
    const ports = { admin: 0, grpc: 0, webhook: 0 };

    const cp = (): ControlPlane => {
      if (plane === undefined) throw new Error('control plane did not start (see beforeAll)');
      return plane;
    };
    const kubectl = (
      args: readonly string[],
      opts: { input?: string; user?: string } = {},
    ): Promise<CommandResult> =>
      cp().kubectl(args, {
        ...(opts.input !== undefined ? { input: opts.input } : {}),
        ...(opts.user !== undefined ? { kubeconfig: cp().userKubeconfig(opts.user) } : {}),
      });
    const ok = async (
      args: readonly string[],
      opts: { input?: string; user?: string } = {},
    ): Promise<string> => {
      const r = await kubectl(args, opts);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
      return r.stdout;
    };
    const getJson = async (args: readonly string[]): Promise<Json> =>
      JSON.parse(await ok([...args, '-o', 'json'])) as Json;
    const getPolicy = async (name: string): Promise<ErpIntegrationPolicy> =>
      (await getJson([
        '-n',
        NS,
        'get',
        'erpintegrationpolicy',
        name,
      ])) as unknown as ErpIntegrationPolicy;
    const condition = (
      p: ErpIntegrationPolicy,
      type: string,
    ): { status: string; reason: string } | undefined =>
      p.status?.conditions?.find((c) => c.type === type);
    const waitPolicy = (
      name: string,
      check: (p: ErpIntegrationPolicy) => boolean,
    ): Promise<ErpIntegrationPolicy> =>
      eventually(`policy ${name}`, async () => {
        const p = await getPolicy(name);
        return p.status?.observedGeneration === p.metadata.generation && check(p) ? p : undefined;
      });

    const startController = async (): Promise<ControllerProcess> => {
      const args = [
        join(ROOT, 'dist', 'cmd', 'controller', 'main.js'),
        '--kubeconfig',
        cp().kubeconfigPath,
        '--namespace',
        OWN_NS,
        '--identity',
        'e2e-controller',
        '--lease-duration',
        '4s',
        '--renew-deadline',
        '3s',
        '--retry-period',
        '500ms',
        '--reviewer-groups',
        'erp-reviewers',
        '--admin-address',
        `127.0.0.1:${ports.admin}`,
        '--grpc-address',
        `127.0.0.1:${ports.grpc}`,
        '--controller-address',
        `127.0.0.1:${ports.grpc}`,
        '--webhook-address',
        `127.0.0.1:${ports.webhook}`,
        '--webhook-certificates',
        'self',
        '--webhook-configuration',
        RELEASE,
        '--webhook-ip-addresses',
        '127.0.0.1',
        '--webhook-cert-dir',
        join(dir, 'webhook'),
        '--ca-dir',
        join(dir, 'ca'),
        '--sidecar-image',
        'registry.example/erpguard/erpguard:0.1.0',
        '--log-level',
        'info',
      ];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const output: string[] = [];
      const keep = (chunk: Buffer): void => {
        output.push(chunk.toString('utf8'));
        if (output.length > 2_000) output.splice(0, 1_000);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const proc = { child, output, exited };
      try {
        await eventually(
          'controller /readyz',
          async () => {
            if (child.exitCode !== null) throw new Error(`controller exited: ${output.join('')}`);
            const res = await fetch(`http://127.0.0.1:${ports.admin}/readyz`);
            return res.status === 200 ? true : undefined;
          },
          60_000,
        );
      } catch (error) {
        child.kill('SIGKILL');
        throw new Error(`${(error as Error).message}\n${output.join('').slice(-4_000)}`);
      }
      return proc;
    };

    const stopController = async (): Promise<number | null> => {
      const proc = controller;
      controller = undefined;
      if (proc === undefined || proc.child.exitCode !== null) return proc?.child.exitCode ?? null;
      proc.child.kill('SIGTERM');
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), 20_000);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    };

    /** `kubectl erpguard approve` through the CLI code with the user's kubeconfig. */
    const approveAs = async (
      user: string,
      name: string,
    ): Promise<{ code: number; out: string; err: string }> => {
      let out = '';
      let err = '';
      const code = await runCli(
        ['approve', name, '-n', NS, '--kubeconfig', cp().userKubeconfig(user)],
        {
          stdout: (t) => void (out += t),
          stderr: (t) => void (err += t),
          now: () => new Date(),
          env: {},
        },
        { ...POLICY_COMMANDS, ...clusterCommands((c) => new CliCluster(c)) },
      );
      return { code, out, err };
    };

    const deployment = (name: string, module: string, integrations: string): string =>
      JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name, namespace: NS },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: name } },
          template: {
            metadata: {
              labels: { app: name, 'erpguard.io/module': module },
              annotations: { 'erpguard.io/integrations': integrations },
            },
            spec: {
              serviceAccountName: module,
              containers: [{ name: 'app', image: 'registry.example/erp/app:1.0.0' }],
            },
          },
        },
      });

    const scenarioPolicy = (rps: number): string =>
      JSON.stringify({
        apiVersion: 'erpguard.io/v1alpha1',
        kind: 'ErpIntegrationPolicy',
        metadata: { name: 'wms-posts-receipts', namespace: NS },
        spec: {
          description: 'Goods receipts posted in the warehouse create accruals in finance.',
          source: { module: 'wms' },
          destination: { module: 'finance' },
          rules: [{ methods: ['POST'], paths: ['/api/v1/goods-receipts'] }],
          rateLimit: { requestsPerSecond: rps, burst: rps },
          certificateTTL: '1h',
          validUntil: validUntil(90),
        },
      });

    beforeAll(async () => {
      plane = await startControlPlane();
      dir = await mkdtemp(join(tmpdir(), 'erpguard-e2e-'));
      // The controller runs compiled, as in the image.
      await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, timeout: 180_000 });
      ports.admin = await freePort();
      ports.grpc = await freePort();
      ports.webhook = await freePort();

      await cp().createUserCredentials('alice', ['erp-reviewers']);
      await cp().createUserCredentials('bob', ['erp-developers']);
      await ok(['create', 'namespace', OWN_NS]);
      await ok(['create', 'namespace', NS]);
      await ok(['label', 'namespace', NS, 'erpguard.io/enforce=true']);
      const install = await cp().helm(
        [
          'install',
          RELEASE,
          join(ROOT, 'charts', 'erpguard'),
          '--namespace',
          OWN_NS,
          '--no-hooks',
          '--wait=false',
          '--set',
          'webhook.certificates=url',
          '--set',
          `webhook.url=https://127.0.0.1:${ports.webhook}`,
          // A placeholder: the controller (self mode) patches its own CA in.
          '--set',
          'webhook.caBundle=Zm9v',
        ],
        { timeoutMs: 120_000 },
      );
      if (install.code !== 0) throw new Error(`helm install failed: ${install.stderr}`);
      await ok([
        'wait',
        '--for=condition=Established',
        '--timeout=60s',
        'crd/erpintegrationpolicies.erpguard.io',
      ]);
      await ok(['apply', '-f', join(ROOT, 'examples', 'deployments', 'service-accounts.yaml')]);
      // No kube-controller-manager here, so the chart's aggregated roles are not aggregated:
      // grant the two users policy editing in `erp` directly.
      const rbacRules = [
        {
          apiGroups: ['erpguard.io'],
          resources: ['erpintegrationpolicies'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'],
        },
      ];
      await ok(['apply', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [
            {
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'Role',
              metadata: { name: 'policy-editor', namespace: NS },
              rules: rbacRules,
            },
            {
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'RoleBinding',
              metadata: { name: 'policy-editors', namespace: NS },
              roleRef: {
                apiGroup: 'rbac.authorization.k8s.io',
                kind: 'Role',
                name: 'policy-editor',
              },
              subjects: ['alice', 'bob'].map((name) => ({
                apiGroup: 'rbac.authorization.k8s.io',
                kind: 'User',
                name,
              })),
            },
          ],
        }),
      });

      controller = await startController();
    }, 300_000);

    afterAll(async () => {
      await stopController();
      await plane?.stop();
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    }, 60_000);

    it('patches its own webhook CA into the chart webhook configurations (self mode)', async () => {
      const bundle = (await readFile(join(dir, 'webhook', 'ca.crt'), 'utf8')).trim();
      expect(bundle).toMatch(/BEGIN CERTIFICATE/);
      const expected = Buffer.from(`${bundle}\n`, 'utf8').toString('base64');
      for (const kind of ['mutatingwebhookconfiguration', 'validatingwebhookconfiguration']) {
        const config = await eventually(`${kind} caBundle`, async () => {
          const c = await getJson(['get', kind, RELEASE]);
          const webhooks = c['webhooks'] as { clientConfig: { caBundle?: string } }[];
          return webhooks.every((w) => w.clientConfig.caBundle === expected) ? webhooks : undefined;
        });
        expect(config.length).toBeGreaterThan(0);
      }
      const secret = await getJson(['-n', OWN_NS, 'get', 'secret', 'erpguard-webhook-tls']);
      expect(Object.keys(secret['data'] as Json)).toEqual(
        expect.arrayContaining(['tls.crt', 'tls.key', 'ca.crt']),
      );
    }, 90_000);

    it('writes status for the sample policies with observedGeneration', async () => {
      // The samples carry approvals signed by alice; applied by the admin those would be refused
      // (only the approver may record an approval), so they go in unapproved.
      const docs: Json[] = [];
      for (const file of (await readdir(SAMPLES)).filter((f) => f.endsWith('.yaml')).sort()) {
        for (const doc of loadAll(await readFile(join(SAMPLES, file), 'utf8'))) {
          const d = doc as Json;
          const meta = d['metadata'] as Json;
          if (meta['namespace'] !== NS) continue;
          const annotations = { ...((meta['annotations'] as Json | undefined) ?? {}) };
          delete annotations['erpguard.io/approval'];
          delete annotations['erpguard.io/last-author'];
          meta['annotations'] = annotations;
          docs.push(d);
        }
      }
      expect(docs.length).toBeGreaterThanOrEqual(5);
      await eventually('samples applied', async () => {
        const r = await kubectl(['apply', '-f', '-'], {
          input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }),
        });
        return r.code === 0 ? true : undefined;
      });
      for (const d of docs) {
        const name = String((d['metadata'] as Json)['name']);
        const p = await waitPolicy(name, (x) => condition(x, 'Verified') !== undefined);
        expect(p.status?.observedGeneration).toBe(p.metadata.generation);
        expect(condition(p, 'Verified')?.status).toBe('False');
        expect(p.status?.specHash).toMatch(/^sha256:/);
        // The webhook recorded who wrote the spec.
        expect(p.metadata.annotations?.['erpguard.io/last-author']).toMatch(/admin/);
      }
    }, 90_000);

    it('gates a wms Deployment on an approval by a reviewer who is not the author, and voids it on a spec edit', async () => {
      await ok(['apply', '-f', '-'], { input: scenarioPolicy(20), user: 'bob' });
      const created = await waitPolicy(
        'wms-posts-receipts',
        (p) => condition(p, 'Verified') !== undefined,
      );
      expect(created.metadata.annotations?.['erpguard.io/last-author']).toBe('bob');

      const rejected = await kubectl(['apply', '-f', '-'], {
        input: deployment('wms', 'wms', 'finance'),
      });
      expect(rejected.code).not.toBe(0);
      expect(rejected.stderr).toMatch(/denied the request/);
      expect(rejected.stderr).toMatch(/wms-posts-receipts/);
      expect(rejected.stderr).toMatch(/approv/i);

      // The author cannot approve their own spec, even with the right to edit policies.
      const own = await approveAs('bob', 'wms-posts-receipts');
      expect(own.code).not.toBe(0);
      expect(own.err).toMatch(/author|reviewer/i);

      const approved = await approveAs('alice', 'wms-posts-receipts');
      expect(approved.err).toBe('');
      expect(approved.code).toBe(0);
      await waitPolicy('wms-posts-receipts', (p) => condition(p, 'Verified')?.status === 'True');
      // Admission reads the informer cache: the approval reaches it within moments.
      await eventually('wms Deployment admitted', async () => {
        const r = await kubectl(['apply', '-f', '-'], {
          input: deployment('wms', 'wms', 'finance'),
        });
        return r.code === 0 ? true : undefined;
      });

      // A spec edit (by bob) voids the approval; a new Deployment is rejected again.
      await ok(['apply', '-f', '-'], { input: scenarioPolicy(200), user: 'bob' });
      const voided = await waitPolicy(
        'wms-posts-receipts',
        (p) => condition(p, 'Verified')?.reason === 'ApprovalVoided',
      );
      expect(condition(voided, 'Verified')?.status).toBe('False');
      await eventually('wms-2 Deployment rejected', async () => {
        const r = await kubectl(['apply', '-f', '-'], {
          input: deployment('wms-2', 'wms', 'finance'),
        });
        return r.code !== 0 && /wms-posts-receipts/.test(r.stderr) ? true : undefined;
      });
    }, 90_000);

    it('keeps one NetworkPolicy per module that follows the verified policies', async () => {
      const sources = async (module: string): Promise<string[]> => {
        const n = await getJson(['-n', NS, 'get', 'networkpolicy', `erpguard-${module}`]);
        expect(n['metadata']).toMatchObject({
          labels: { 'app.kubernetes.io/managed-by': 'erpguard' },
        });
        const spec = n['spec'] as {
          ingress?: { from?: { podSelector?: { matchExpressions?: { values: string[] }[] } }[] }[];
        };
        return (spec.ingress ?? []).flatMap((r) =>
          (r.from ?? []).flatMap((f) => f.podSelector?.matchExpressions?.[0]?.values ?? []),
        );
      };
      // wms -> finance is voided (previous test): wms is not let into finance.
      const before = await eventually('finance NetworkPolicy', () => sources('finance'));
      expect(before).not.toContain('wms');
      const approved = await approveAs('alice', 'wms-posts-receipts');
      expect(approved.code).toBe(0);
      await eventually('wms let into finance', async () =>
        (await sources('finance')).includes('wms') ? true : undefined,
      );
      // Withdrawing the approval closes it again.
      await ok(['-n', NS, 'annotate', 'eip/wms-posts-receipts', 'erpguard.io/approval-'], {
        user: 'alice',
      });
      await eventually('wms shut out of finance', async () =>
        (await sources('finance')).includes('wms') ? undefined : true,
      );
    }, 90_000);

    it('injects the sidecar exactly once into a Pod of an enforced namespace, never into kube-system', async () => {
      const pod = (name: string, ns: string, module?: string): string =>
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name,
            namespace: ns,
            labels: module !== undefined ? { 'erpguard.io/module': module } : {},
          },
          spec: {
            serviceAccountName: module ?? 'default',
            containers: [{ name: 'app', image: 'registry.example/erp/app:1.0.0' }],
          },
        });
      const created = JSON.parse(
        await ok(['create', '-o', 'json', '-f', '-'], { input: pod('wms-probe', NS, 'wms') }),
      ) as { spec: { initContainers?: { name: string; image: string }[]; containers: unknown[] } };
      const sidecars = (created.spec.initContainers ?? []).filter((c) =>
        c.image.includes('erpguard'),
      );
      expect(sidecars).toHaveLength(1);
      expect(created.spec.containers).toHaveLength(1);

      const system = JSON.parse(
        await ok(['create', '-o', 'json', '-f', '-'], {
          input: pod('probe', 'kube-system', 'wms'),
        }),
      ) as { spec: { initContainers?: unknown[] } };
      expect(system.spec.initContainers ?? []).toHaveLength(0);
    }, 90_000);

    it('publishes the workload trust bundle as a ConfigMap in the enforced namespace (for new sidecars)', async () => {
      const trustBundlePem = await readFile(join(dir, 'ca', 'ca.crt'), 'utf8');
      const published = await eventually('the erpguard-trust-bundle ConfigMap', async () => {
        const r = await kubectl([
          '-n',
          NS,
          'get',
          'configmap',
          'erpguard-trust-bundle',
          '-o',
          'jsonpath={.data.ca\\.crt}',
        ]);
        return r.code === 0 && r.stdout.includes('BEGIN CERTIFICATE') ? r.stdout : undefined;
      });
      expect(published.trim()).toBe(trustBundlePem.trim());
    });

    it('issues a workload certificate for a real projected token, with the SPIFFE ID of the token ServiceAccount', async () => {
      const token = (sa: string): Promise<string> =>
        ok(['-n', NS, 'create', 'token', sa, '--audience', 'erpguard', '--duration', '10m']).then(
          (t) => t.trim(),
        );
      const trustBundlePem = await readFile(join(dir, 'ca', 'ca.crt'), 'utf8');
      const connection = { target: `127.0.0.1:${ports.grpc}`, serverName: 'localhost' };
      const wmsToken = await token('wms');
      const client = new WorkloadIdentityClient({
        ...connection,
        trustBundlePem,
        token: () => wmsToken,
      });
      try {
        const material = await client.start();
        expect(material.spiffeId).toBe(`spiffe://cluster.local/ns/${NS}/sa/wms`);
        expect(spiffeIdOfCertificate(material.certificateChainPem)).toBe(material.spiffeId);
      } finally {
        client.stop();
      }

      // crm's token always yields crm's identity; a CSR asking for wms's is refused.
      const crmToken = await token('crm');
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const sign = async (
        csr: string,
        bearer = crmToken,
      ): Promise<{ certificateChain: string }> => {
        const c = new grpc.Client(
          connection.target,
          channelCredentials(connection, trustBundlePem),
          channelOptions(connection),
        );
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `Bearer ${bearer}`);
        try {
          return await unary(c, methods.signCertificate, { csr, ttlSeconds: 600 }, metadata, {
            deadline: Date.now() + 10_000,
          });
        } finally {
          c.close();
        }
      };
      const own = await sign(buildCsr(privateKey));
      expect(spiffeIdOfCertificate(own.certificateChain)).toBe(
        `spiffe://cluster.local/ns/${NS}/sa/crm`,
      );
      await expect(
        sign(buildCsr(privateKey, { uris: [`spiffe://cluster.local/ns/${NS}/sa/wms`] })),
      ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      // A token for the API server's audience only is not ours.
      const apiToken = (await ok(['-n', NS, 'create', 'token', 'wms', '--duration', '10m'])).trim();
      await expect(sign(buildCsr(privateKey), apiToken)).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      });
    }, 90_000);

    it('leaves kube-system alone while the controller is stopped, and restarts cleanly', async () => {
      expect(await stopController()).toBe(0);
      const r = await kubectl([
        '-n',
        'kube-system',
        'run',
        'probe-down',
        '--image=registry.example/x:1',
        '--restart=Never',
        '-o',
        'json',
      ]);
      expect(r.code).toBe(0);
      expect(
        (JSON.parse(r.stdout) as { spec: { initContainers?: unknown[] } }).spec.initContainers ??
          [],
      ).toHaveLength(0);
      // The enforced namespace fails closed meanwhile.
      const gated = await kubectl(['apply', '-f', '-'], {
        input: deployment('wms-3', 'wms', 'finance'),
      });
      expect(gated.code).not.toBe(0);
      controller = await startController();
    }, 90_000);

    it('helm uninstall leaves no erpguard webhook configurations and keeps the CRD', async () => {
      const r = await cp().helm(['uninstall', RELEASE, '--namespace', OWN_NS]);
      expect(r.code).toBe(0);
      const left = await ok([
        'get',
        'validatingwebhookconfigurations,mutatingwebhookconfigurations',
        '-o',
        'name',
      ]);
      expect(left).not.toMatch(/erpguard/);
      await ok(['get', 'crd', 'erpintegrationpolicies.erpguard.io']);
    }, 90_000);
  },
);
