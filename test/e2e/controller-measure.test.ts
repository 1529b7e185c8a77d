/**
 * Measurements for the controller on a real API server (printed, never asserted: speed is not a
 * test result). Runs only with ERPGUARD_MEASURE=1:
 *
 * 1. Approval → Verified=True latency, p50/p99 over 20 approvals: from just before the approval
 *    annotation is sent until a watch in this process sees the status. In-process controller.
 * 2. RSS of the real `erpguard-controller` process (compiled with tsc, run with node) idle, and
 *    after 1,000 policies were applied and all got their status; plus how long that took.
 *
 *   ERPGUARD_MEASURE=1 NODE_OPTIONS=--experimental-vm-modules npx jest test/e2e/controller-measure
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { Controller } from '../../pkg/controller/controller.js';
import { createKubeClients, loadKubeConfig, requestOptions } from '../../pkg/kube/client.js';
import type { KubeClients } from '../../pkg/kube/client.js';
import { policyInformer } from '../../pkg/kube/resources.js';
import { specHash } from '../../pkg/policy/hash.js';
import { createMetricsRegistry } from '../../pkg/telemetry/metrics.js';
import { startControlPlane } from '../harness/control-plane.js';
import type { ControlPlane } from '../harness/control-plane.js';

const enabled =
  process.env['ERPGUARD_MEASURE'] === '1' && process.env['ERPGUARD_SKIP_CLUSTER'] !== '1';
const describeMeasure = enabled ? describe : describe.skip;

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CRD = join(ROOT, 'crds/erpguard.io_erpintegrationpolicies.yaml');
const OWN_NS = 'erpguard-system';
const GROUP = { group: 'erpguard.io', version: 'v1alpha1', plural: 'erpintegrationpolicies' };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const report = (line: string): void => {
  process.stdout.write(`[measure] ${line}\n`);
};

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

const validUntil = (): string =>
  new Date(Date.now() + 90 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

function policy(ns: string, name: string, src: string, dst: string): ErpIntegrationPolicy {
  return {
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: {
      name,
      namespace: ns,
      annotations: { 'erpguard.io/last-author': 'bob@corp.example' },
    },
    spec: {
      source: { module: src },
      destination: { module: dst },
      rules: [{ methods: ['GET'], paths: ['/api/v1/customers/{id}'] }],
      rateLimit: { requestsPerSecond: 50, burst: 100 },
      certificateTTL: '1h',
      validUntil: validUntil(),
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A few values from the controller's /metrics. */
async function scrape(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (prefix: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(prefix))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  const count = value('erpguard_reconcile_duration_seconds_count');
  return {
    reconciles: count,
    reconcileAvgMs:
      Math.round((value('erpguard_reconcile_duration_seconds_sum') / count) * 10_000) / 10,
    statusWrites: value('erpguard_status_writes_total'),
    events: value('erpguard_events_total'),
    heapUsedMiB: Math.round(value('nodejs_heap_size_used_bytes') / 1_048_576),
  };
}

async function rssKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number =>
    Number(/(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(name)) ?? '')?.[1] ?? NaN);
  return { rss: field('VmRSS:'), hwm: field('VmHWM:') };
}

describeMeasure('controller measurements (real API server)', () => {
  let plane: ControlPlane | undefined;
  let clients: KubeClients;
  const cp = (): ControlPlane => {
    if (plane === undefined) throw new Error('control plane did not start');
    return plane;
  };
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const res = await cp().kubectl(args, input !== undefined ? { input, timeoutMs: 600_000 } : {});
    if (res.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${res.stderr}`);
    return res.stdout;
  };
  const results: Record<string, unknown> = {};

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
  }, 60 * 60_000);

  afterAll(async () => {
    report(JSON.stringify(results));
    const out = process.env['ERPGUARD_MEASURE_OUT'];
    if (out !== undefined && out !== '')
      await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
    clients.close();
    await plane?.stop();
  }, 60_000);

  it('approval → Verified=True latency over 20 approvals', async () => {
    const ns = 'latency';
    await kubectl(['create', 'namespace', ns]);
    const registry = createMetricsRegistry();
    const controller = new Controller({
      clients,
      registry,
      namespace: OWN_NS,
      reviewers: { groups: ['erp-reviewers'] },
      identity: 'measure',
    });
    controller.onVerifiedPoliciesChanged(() => undefined);
    const watcher = policyInformer(clients, { namespace: ns });
    const waiters = new Map<string, () => void>();
    const check = (p: ErpIntegrationPolicy): void => {
      const verified = p.status?.conditions?.find((c) => c.type === 'Verified')?.status === 'True';
      if (verified) waiters.get(p.metadata.name)?.();
    };
    watcher.on({ add: check, update: check });
    watcher.start();
    controller.start();
    try {
      await Promise.all([controller.started, watcher.synced]);
      const n = 20;
      const names = Array.from({ length: n }, (_, i) => `p${String(i).padStart(2, '0')}`);
      const list = {
        apiVersion: 'v1',
        kind: 'List',
        items: names.map((name, i) => policy(ns, name, `src${i}`, 'finance')),
      };
      await kubectl(['apply', '-f', '-'], JSON.stringify(list));
      // Wait until every policy has its first (NotApproved) status.
      for (;;) {
        const done = watcher.list().filter((p) => p.status?.conditions !== undefined).length;
        if (done === n) break;
        await sleep(100);
      }
      const samples: number[] = [];
      for (const name of names) {
        const p = watcher.get(name, ns) as ErpIntegrationPolicy;
        const approval = {
          by: 'alice@corp.example',
          groups: ['erp-reviewers'],
          at: new Date().toISOString(),
          specHash: specHash(p.spec),
        };
        const seen = new Promise<void>((resolve) => waiters.set(name, resolve));
        const t0 = performance.now();
        await clients.custom.patchNamespacedCustomObject(
          {
            ...GROUP,
            namespace: ns,
            name,
            body: {
              metadata: { annotations: { 'erpguard.io/approval': JSON.stringify(approval) } },
            },
          },
          requestOptions(clients, 'merge'),
        );
        await seen;
        samples.push(performance.now() - t0);
        await sleep(50);
      }
      const sorted = [...samples].sort((a, b) => a - b);
      const r = {
        tries: n,
        p50Ms: Math.round(percentile(sorted, 50) * 10) / 10,
        p99Ms: Math.round(percentile(sorted, 99) * 10) / 10,
        minMs: Math.round((sorted[0] ?? NaN) * 10) / 10,
        maxMs: Math.round((sorted[sorted.length - 1] ?? NaN) * 10) / 10,
      };
      results['approvalToVerified'] = r;
      report(`approval -> Verified=True: ${JSON.stringify(r)}`);
      expect(samples).toHaveLength(n);
    } finally {
      await controller.stop();
      await watcher.stop();
    }
  }, 300_000);

  it('RSS of the controller process with 1,000 policies', async () => {
    const ns = 'scale';
    await kubectl(['create', 'namespace', ns]);
    // Compile the controller into a temp dir and run it with plain node, as in production.
    let dir = process.env['ERPGUARD_CONTROLLER_BUILD'];
    let tempBuild: string | undefined;
    if (dir === undefined || dir === '') {
      tempBuild = await mkdtemp(join(tmpdir(), 'erpguard-ctl-build-'));
      dir = tempBuild;
      const tsc = spawn(
        join(ROOT, 'node_modules/.bin/tsc'),
        ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dir],
        { cwd: ROOT, stdio: 'ignore' },
      );
      await new Promise((r) => tsc.on('exit', r)); // type errors elsewhere do not stop emit
      await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
    }
    const main = join(dir, 'cmd/controller/main.js');
    let child: ChildProcess | undefined;
    const port = await freePort();
    try {
      child = spawn(
        process.execPath,
        [
          main,
          '--kubeconfig',
          cp().kubeconfigPath,
          '--namespace',
          OWN_NS,
          '--reviewer-groups',
          'erp-reviewers',
          '--admin-address',
          `127.0.0.1:${port}`,
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      const pid = child.pid as number;
      for (let i = 0; i < 300; i++) {
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        if (ready === 200) break;
        await sleep(200);
      }
      await sleep(3_000);
      const idle = await rssKiB(pid);

      const n = 1_000;
      const items = Array.from({ length: n }, (_, i) =>
        policy(ns, `policy-${String(i).padStart(4, '0')}`, `m${i % 50}`, `d${Math.floor(i / 50)}`),
      );
      const t0 = performance.now();
      for (let i = 0; i < n; i += 250) {
        await kubectl(
          ['apply', '-f', '-'],
          JSON.stringify({ apiVersion: 'v1', kind: 'List', items: items.slice(i, i + 250) }),
        );
      }
      const applied = performance.now() - t0;
      let withStatus = 0;
      while (withStatus < n) {
        const list = (await clients.custom.listNamespacedCustomObject({
          ...GROUP,
          namespace: ns,
        })) as { items: ErpIntegrationPolicy[] };
        withStatus = list.items.filter(
          (p) => p.status?.observedGeneration === p.metadata.generation,
        ).length;
        if (withStatus < n) await sleep(500);
        if (performance.now() - t0 > 600_000)
          throw new Error(`only ${withStatus} of ${n} policies got a status`);
      }
      const allStatus = performance.now() - t0;
      await sleep(5_000);
      const loaded = await rssKiB(pid);
      const metrics = await scrape(port);
      const r = {
        ...metrics,
        policies: n,
        idleRssMiB: Math.round(idle.rss / 1024),
        rssMiB: Math.round(loaded.rss / 1024),
        peakRssMiB: Math.round(loaded.hwm / 1024),
        kubectlApplySeconds: Math.round(applied / 100) / 10,
        allStatusWrittenSeconds: Math.round(allStatus / 100) / 10,
      };
      results['controllerRss'] = r;
      report(`controller RSS: ${JSON.stringify(r)}`);
      expect(withStatus).toBe(n);
    } finally {
      if (child !== undefined && child.exitCode === null) {
        const exited = new Promise((r) => child?.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        results['controllerExitCode'] = child.exitCode;
      }
      if (tempBuild !== undefined) await rm(tempBuild, { recursive: true, force: true });
    }
  }, 900_000);
});
