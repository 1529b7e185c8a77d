/**
 * Sidecar benchmark (issue 4). One run, three topologies on loopback, same app, same load:
 *
 *   direct    client → app
 *   erpguard  client → outbound sidecar (crm) → mTLS → inbound sidecar (finance) → app
 *   haproxy   client → haproxy (mTLS origination) → mTLS → haproxy (termination, client-cert
 *             verification, path ACL) → app                    [skipped if haproxy is missing]
 *
 * Each topology is loaded at 1 and 32 keep-alive connections (wrk, or a Node load generator when
 * wrk is missing). Reported: req/s, req/s per busy proxy core (req/s divided by the CPU seconds per
 * second the two proxies used), added p50/p99 latency over `direct`, and the proxies' RSS. Results
 * go to bench/results/sidecar.json. The machine is shared (load generator, app and proxies on the
 * same cores), so absolute numbers are pessimistic; the ratios are what to read.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { createTestCa, issueLeaf, spiffeId } from '../../pkg/sidecar/testing/pki.js';
import type { ProcessConfig } from './process.js';

const DURATION_S = Number(process.env['BENCH_DURATION_S'] ?? 5);
const WARMUP_S = 1;
const CONNECTIONS = [1, 32] as const;
const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const resultsPath = join(
  process.env['BENCH_RESULTS_DIR'] ?? join(repoRoot, 'bench', 'results'),
  'sidecar.json',
);
const PATH = '/api/v1/customers/42';
const MASKED_PATH = '/api/v1/masked/42';

interface Load {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

interface Run extends Load {
  topology: string;
  connections: number;
  proxyCpuCores: number;
  rpsPerCore: number | null;
  addedP50Ms: number | null;
  addedP99Ms: number | null;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/**
 * Node flags of the sidecar processes: the recommended deployment flags (docs/sidecar.md), or
 * BENCH_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
const SIDECAR_NODE_ARGS = (process.env['BENCH_NODE_ARGS'] ?? '--max-semi-space-size=1')
  .split(' ')
  .filter((a) => a !== '');

function startNode(
  configPath: string,
  sidecar: boolean,
): Promise<{ child: ChildProcess; ready: Record<string, number> }> {
  return new Promise((res, rej) => {
    const extra = sidecar ? SIDECAR_NODE_ARGS : [];
    const child = spawn(process.execPath, [...extra, join(here, 'process.js'), configPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /READY (.*)\n/.exec(out);
      if (m?.[1] !== undefined) res({ child, ready: JSON.parse(m[1]) as Record<string, number> });
    });
    child.once('exit', (code) => rej(new Error(`child exited with ${code}`)));
  });
}

function startHaproxy(cfg: string): Promise<ChildProcess> {
  return new Promise((res, rej) => {
    const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => rej(new Error(`haproxy exited with ${code}: ${err}`)));
    setTimeout(() => res(child), 500);
  });
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100);

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function rssMb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number =>
    Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function toMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (m === null) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(
  port: number,
  path: string,
  connections: number,
  seconds: number,
  host: string,
): Promise<Load> {
  const args = [
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '--latency',
    '-H',
    `Host: ${host}`,
    `http://127.0.0.1:${port}${path}`,
  ];
  const out = await new Promise<string>((res, rej) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.once('exit', (code) =>
      code === 0 ? res(text) : rej(new Error(`wrk exited ${code}: ${text}`)),
    );
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    out,
  );
  const errs = socketErrors === null ? 0 : socketErrors.slice(1).reduce((a, b) => a + Number(b), 0);
  return { rps, p50Ms: p50, p99Ms: p99, errors: non2xx + errs };
}

/** Fallback load generator (less efficient than wrk: it competes harder for the same cores). */
async function nodeLoad(
  port: number,
  path: string,
  connections: number,
  seconds: number,
  host: string,
): Promise<Load> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          const r = await pool.request({ path, method: 'GET', headers: { host } });
          await r.body.dump();
          if (r.statusCode !== 200) errors++;
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t);
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { rps: latencies.length / seconds, p50Ms: q(0.5), p99Ms: q(0.99), errors };
}

async function measure(
  topology: string,
  port: number,
  path: string,
  connections: number,
  proxies: readonly number[],
  load: typeof wrk,
): Promise<Run> {
  await load(port, path, connections, WARMUP_S, 'finance');
  const cpu0 = proxies.map(cpuSeconds);
  const t0 = performance.now();
  const r = await load(port, path, connections, DURATION_S, 'finance');
  const wall = (performance.now() - t0) / 1000;
  const cpu = proxies.map(cpuSeconds).reduce((a, b, i) => a + b - (cpu0[i] ?? 0), 0);
  const cores = cpu / wall;
  return {
    topology,
    connections,
    ...r,
    proxyCpuCores: round(cores, 3),
    rpsPerCore: proxies.length === 0 || cores === 0 ? null : round(r.rps / cores, 0),
    addedP50Ms: null,
    addedP99Ms: null,
  };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function policy(name: string, path: string, masked: boolean): ErpIntegrationPolicy {
  return {
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: { name, namespace: 'erp' },
    spec: {
      source: { module: 'crm' },
      destination: { module: 'finance' },
      rules: [{ methods: ['GET'], paths: [path] }],
      rateLimit: { requestsPerSecond: 1_000_000 },
      ...(masked
        ? { dataProtection: { mask: ['$.items[*].iban'], tokenize: ['$.items[*].email'] } }
        : {}),
    },
  };
}

async function main(): Promise<void> {
  const loadAtStart = round((await import('node:os')).loadavg()[0] ?? 0, 2);
  const dir = mkdtempSync(join(tmpdir(), 'erpguard-bench-sidecar-'));
  const children: ChildProcess[] = [];
  const load = has('wrk') ? wrk : nodeLoad;
  const notes: string[] = [];
  if (load === nodeLoad)
    notes.push(
      'wrk not installed: used the Node load generator (apt-get install wrk for better numbers)',
    );
  try {
    const ca = createTestCa();
    const financeLeaf = issueLeaf(ca, {
      uris: [spiffeId('finance')],
      notAfter: new Date(Date.now() + 86_400_000),
    });
    const crmLeaf = issueLeaf(ca, {
      uris: [spiffeId('crm')],
      notAfter: new Date(Date.now() + 86_400_000),
    });
    const write = (name: string, text: string): string => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    const caFile = write('ca.pem', ca.certPem);

    const app = await startNode(
      write('app.json', JSON.stringify({ role: 'app' } satisfies ProcessConfig)),
      false,
    );
    children.push(app.child);
    const appPort = app.ready['port'] as number;
    const policies = [
      policy('crm-plain', '/api/v1/customers/{id}', false),
      policy('crm-masked', '/api/v1/masked/{id}', true),
    ];
    const material = (
      leaf: typeof crmLeaf,
    ): Extract<ProcessConfig, { role: 'sidecar' }>['tls'] => ({
      key: leaf.keyPem,
      certChain: leaf.chain,
      trustBundle: [ca.certPem],
      notAfter: leaf.notAfter,
      spiffeId: leaf.spiffeIds[0] ?? '',
    });
    const finance = await startNode(
      write(
        'finance.json',
        JSON.stringify({
          role: 'sidecar',
          module: 'finance',
          appPort,
          tls: material(financeLeaf),
          policies,
          destinations: [],
          auditLogPath: join(dir, 'finance-audit.log'),
        } satisfies ProcessConfig),
      ),
      true,
    );
    children.push(finance.child);
    const crm = await startNode(
      write(
        'crm.json',
        JSON.stringify({
          role: 'sidecar',
          module: 'crm',
          appPort,
          tls: material(crmLeaf),
          policies: [],
          destinations: [
            {
              module: 'finance',
              namespace: 'erp',
              address: { host: '127.0.0.1', port: finance.ready['inbound'] as number },
              identities: [spiffeId('finance')],
            },
          ],
          auditLogPath: join(dir, 'crm-audit.log'),
        } satisfies ProcessConfig),
      ),
      true,
    );
    children.push(crm.child);
    const sidecarPids = [crm.child.pid as number, finance.child.pid as number];

    let haproxyPids: number[] | undefined;
    let haproxyOutPort = 0;
    if (has('haproxy')) {
      const inPort = await freePort();
      haproxyOutPort = await freePort();
      const financePem = write('h-finance.pem', financeLeaf.certPem + financeLeaf.keyPem);
      const crmPem = write('h-crm.pem', crmLeaf.certPem + crmLeaf.keyPem);
      const common =
        'global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n';
      const inCfg = write(
        'h-in.cfg',
        `${common}frontend in\n  bind 127.0.0.1:${inPort} ssl crt ${financePem} ca-file ${caFile} verify required alpn http/1.1\n` +
          `  acl allowed path_reg ^/api/v1/customers/[^/]+$\n  acl caller ssl_c_s_dn(CN) -m str ${spiffeId('crm')}\n` +
          `  http-request deny unless METH_GET allowed caller\n  http-request set-header x-erpguard-caller %[ssl_c_s_dn(CN)]\n  default_backend app\n` +
          `backend app\n  http-reuse always\n  server app 127.0.0.1:${appPort}\n`,
      );
      const outCfg = write(
        'h-out.cfg',
        `${common}frontend out\n  bind 127.0.0.1:${haproxyOutPort}\n  default_backend finance\n` +
          `backend finance\n  http-reuse always\n  server fin 127.0.0.1:${inPort} ssl crt ${crmPem} ca-file ${caFile} verify required alpn http/1.1\n`,
      );
      const hin = await startHaproxy(inCfg);
      const hout = await startHaproxy(outCfg);
      children.push(hin, hout);
      haproxyPids = [hout.pid as number, hin.pid as number];
    } else {
      notes.push('haproxy not installed: peer skipped (apt-get install haproxy)');
    }

    // Sanity: every topology answers 200 before it is measured.
    for (const [name, port] of [
      ['direct', appPort],
      ['erpguard', crm.ready['outbound'] as number],
      ...(haproxyPids === undefined ? [] : [['haproxy', haproxyOutPort] as const]),
    ] as const) {
      const check = await nodeLoad(port, PATH, 1, 0.2, 'finance');
      if (check.errors > 0) throw new Error(`${name}: requests fail before the benchmark`);
    }

    const runs: Run[] = [];
    let rssPeak = 0;
    for (const c of CONNECTIONS) {
      runs.push(await measure('direct', appPort, PATH, c, [], load));
      runs.push(
        await measure('erpguard', crm.ready['outbound'] as number, PATH, c, sidecarPids, load),
      );
      rssPeak = Math.max(rssPeak, ...sidecarPids.map((p) => rssMb(p).rss));
      if (haproxyPids !== undefined)
        runs.push(await measure('haproxy', haproxyOutPort, PATH, c, haproxyPids, load));
    }
    const masked = await measure(
      'erpguard+masking',
      crm.ready['outbound'] as number,
      MASKED_PATH,
      32,
      sidecarPids,
      load,
    );
    runs.push(masked);
    for (const r of runs) {
      const base = runs.find((d) => d.topology === 'direct' && d.connections === r.connections);
      if (base !== undefined && r.topology !== 'direct') {
        r.addedP50Ms = round(r.p50Ms - base.p50Ms, 3);
        r.addedP99Ms = round(r.p99Ms - base.p99Ms, 3);
      }
    }
    const rss = sidecarPids.map((p) => rssMb(p));
    const find = (t: string, c: number): Run | undefined =>
      runs.find((r) => r.topology === t && r.connections === c);
    const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
      a === null || a === undefined || b === null || b === undefined || b === 0
        ? null
        : round(a / b, 3);
    const e32 = find('erpguard', 32);
    const h32 = find('haproxy', 32);
    const e1 = find('erpguard', 1);
    const h1 = find('haproxy', 1);
    const result = {
      benchmark: 'sidecar',
      date: new Date().toISOString(),
      node: process.version,
      cpus: (await import('node:os')).cpus().length,
      // The machine may be shared: a load average above the core count inflates every number.
      loadAverage1mAtStart: loadAtStart,
      loadGenerator: load === wrk ? 'wrk' : 'node',
      sidecarNodeFlags: SIDECAR_NODE_ARGS.join(' '),
      durationSeconds: DURATION_S,
      rps_per_core_ratio_vs_haproxy: ratio(e32?.rpsPerCore, h32?.rpsPerCore),
      rps_per_core_ratio_vs_haproxy_c1: ratio(e1?.rpsPerCore, h1?.rpsPerCore),
      added_p50_ratio_vs_haproxy_c1: ratio(e1?.addedP50Ms, h1?.addedP50Ms),
      added_p99_ratio_vs_haproxy_c1: ratio(e1?.addedP99Ms, h1?.addedP99Ms),
      added_p50_ratio_vs_haproxy_c32: ratio(e32?.addedP50Ms, h32?.addedP50Ms),
      rss_mb: round(Math.max(...rss.map((r) => r.rss), rssPeak), 1),
      rss_peak_mb: round(Math.max(...rss.map((r) => r.hwm)), 1),
      targets: {
        rps_per_core_ratio_vs_haproxy: '>= 0.5',
        added_p50_ratio_vs_haproxy_c1: '<= 2',
        rss_mb: '<= 60',
      },
      runs,
      notes,
    };

    const pad = (v: string | number | null | undefined, n: number): string =>
      String(v ?? '-').padStart(n);
    const lines = [
      `${'topology'.padEnd(18)}${pad('conns', 6)}${pad('req/s', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('+p50', 8)}${pad('+p99', 8)}${pad('cores', 7)}${pad('req/s/core', 12)}${pad('errors', 8)}`,
      ...runs.map(
        (r) =>
          `${r.topology.padEnd(18)}${pad(r.connections, 6)}${pad(Math.round(r.rps), 10)}${pad(r.p50Ms.toFixed(3), 9)}${pad(r.p99Ms.toFixed(3), 9)}${pad(r.addedP50Ms?.toFixed(3), 8)}${pad(r.addedP99Ms?.toFixed(3), 8)}${pad(r.proxyCpuCores.toFixed(2), 7)}${pad(r.rpsPerCore, 12)}${pad(r.errors, 8)}`,
      ),
      '',
      `req/s per core, erpguard / haproxy: ${result.rps_per_core_ratio_vs_haproxy ?? 'n/a'} at 32 connections, ${result.rps_per_core_ratio_vs_haproxy_c1 ?? 'n/a'} at 1 (target >= 0.5)`,
      `added p50 at 1 connection, erpguard / haproxy: ${result.added_p50_ratio_vs_haproxy_c1 ?? 'n/a'} (target <= 2)`,
      `sidecar RSS: ${result.rss_mb} MB now, ${result.rss_peak_mb} MB peak (target <= 60)`,
      `load average at start: ${loadAtStart} on ${result.cpus} cores`,
      ...notes.map((n) => `note: ${n}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    mkdirSync(dirname(resultsPath), { recursive: true });
    writeFileSync(resultsPath, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`wrote ${resultsPath}\n`);
  } finally {
    // SIGTERM first: sidecars drain and exit (and write --cpu-prof profiles); then make sure.
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
