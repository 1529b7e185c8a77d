/**
 * Admission webhook benchmark (`make bench-webhook`): HTTPS with keep-alive on loopback, the
 * server in its own process pinned to one core (taskset), load from this process with an undici
 * Pool (one keep-alive connection per concurrent request, closed loop), realistic Deployment and
 * Pod reviews (validate, mutate, validate-after-injection, rotating over 24 modules with 72
 * verified policies). Measures req/s and p50/p99 at 50 and 200 concurrent requests.
 *
 * Peer, run side by side: `baseline`, a bare node:https server that parses the review and says
 * allowed (the transport floor); the ratios show what express and the admission logic cost.
 * If `wrk` or `hey` is installed it also drives the erpguard server at 200 connections (a C/Go
 * client, so client overhead is not in the numbers). Writes bench/results/webhook.json.
 * `--quick` shortens every phase (smoke test).
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Pool } from 'undici';

import { buildSnapshot, requestMix } from './workload.js';
import type { BenchRequest } from './workload.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const MEASURE_MS = quick ? 1_000 : 6_000;
const WARMUP_MS = quick ? 500 : 2_000;
const LEVELS = [50, 200] as const;
const TARGET_P99_MS_C200 = 10;

interface LevelResult {
  concurrency: number;
  /** Server process CPU time per request (user + system), in microseconds. */
  server_cpu_us_per_req: number;
  requests: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

async function which(cmd: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('sh', ['-c', `command -v ${cmd}`]);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

async function makeCertificate(dir: string): Promise<{ cert: string; key: string; ca: string }> {
  const p = (n: string): string => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-days',
    '1',
    '-subj',
    '/CN=bench-ca',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
  ]);
  await run('openssl', [
    'req',
    ...ec,
    '-subj',
    '/CN=localhost',
    '-keyout',
    p('tls.key'),
    '-out',
    p('tls.csr'),
  ]);
  await writeFile(
    p('ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
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
  return { cert: p('tls.crt'), key: p('tls.key'), ca: p('ca.crt') };
}

async function startServer(
  mode: string,
  cert: string,
  key: string,
  cpu: number | undefined,
): Promise<{ child: ChildProcess; port: number }> {
  const script = fileURLToPath(new URL('./server.js', import.meta.url));
  const nodeArgs = [script, '--mode', mode, '--cert', cert, '--key', key];
  const [file, args] =
    cpu === undefined
      ? [process.execPath, nodeArgs]
      : ['taskset', ['-c', String(cpu), process.execPath, ...nodeArgs]];
  const child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port?: number }) =>
      m.port !== undefined ? resolve(m.port) : reject(new Error('no port')),
    );
    child.once('exit', (code) =>
      reject(new Error(`bench server (${mode}) exited with ${String(code)}`)),
    );
  });
  return { child, port };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, i)] as number;
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** Closed loop: `concurrency` workers, each sending the next request as soon as the last returns. */
/** Asks the server process for its CPU time (µs). */
function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const onMessage = (m: { cpuMicros?: number }): void => {
      if (m.cpuMicros === undefined) return;
      child.off('message', onMessage);
      resolve(m.cpuMicros);
    };
    child.on('message', onMessage);
    child.send({ cmd: 'cpu' });
  });
}

async function drive(
  child: ChildProcess,
  port: number,
  ca: string,
  mix: readonly BenchRequest[],
  concurrency: number,
  ms: number,
  check: boolean,
): Promise<LevelResult> {
  const pool = new Pool(`https://127.0.0.1:${port}`, {
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    connect: { ca, servername: 'localhost' },
  });
  let next = 0;
  const send = async (): Promise<boolean> => {
    const r = mix[next++ % mix.length] as BenchRequest;
    const res = await pool.request({
      path: r.path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: r.body,
    });
    const text = await res.body.text();
    return res.statusCode === 200 && (!check || text.includes('"allowed":true'));
  };
  // Open every connection (TLS handshakes) and let the JIT settle before timing.
  const warmEnd = Date.now() + WARMUP_MS;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < warmEnd) await send();
    }),
  );
  const latencies: number[] = [];
  let errors = 0;
  const cpu0 = await serverCpu(child);
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms) * 1_000_000n;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (process.hrtime.bigint() < end) {
        const t0 = process.hrtime.bigint();
        let ok = false;
        try {
          ok = await send();
        } catch {
          ok = false;
        }
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!ok) errors++;
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu1 = await serverCpu(child);
  await pool.close();
  const sorted = Float64Array.from(latencies).sort();
  return {
    concurrency,
    server_cpu_us_per_req: round((cpu1 - cpu0) / Math.max(1, latencies.length), 1),
    requests: latencies.length,
    errors,
    rps: Math.round(latencies.length / elapsed),
    p50_ms: round(percentile(sorted, 0.5)),
    p90_ms: round(percentile(sorted, 0.9)),
    p99_ms: round(percentile(sorted, 0.99)),
    p999_ms: round(percentile(sorted, 0.999)),
    max_ms: round(sorted[sorted.length - 1] ?? NaN),
  };
}

/** Optional C client: wrk with a Lua script rotating over the same bodies. */
async function runWrk(
  wrk: string,
  port: number,
  mix: readonly BenchRequest[],
  dir: string,
  cpu: number | undefined,
): Promise<Record<string, number> | undefined> {
  const bodies = mix
    .map((r) => `{path=${JSON.stringify(r.path)}, body=[==[${r.body}]==]}`)
    .join(',\n');
  const script = join(dir, 'mix.lua');
  await writeFile(
    script,
    `local reqs = {\n${bodies}\n}\nlocal i = 0\nrequest = function()\n  i = i % #reqs + 1\n  local r = reqs[i]\n  return wrk.format("POST", r.path, {["Content-Type"]="application/json"}, r.body)\nend\n`,
  );
  const seconds = Math.max(1, Math.round(MEASURE_MS / 1000));
  const args = [
    '-t1',
    '-c200',
    `-d${seconds}s`,
    '--latency',
    '-s',
    script,
    `https://127.0.0.1:${port}`,
  ];
  const [file, argv] =
    cpu === undefined ? [wrk, args] : ['taskset', ['-c', String(cpu), wrk, ...args]];
  try {
    const { stdout } = await run(file, argv, { timeout: 60_000 });
    const ms = (label: string): number => {
      const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(stdout);
      if (m === null) return NaN;
      const v = Number(m[1]);
      return round(m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v);
    };
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
    const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
    return {
      rps_c200: rps === null ? NaN : Math.round(Number(rps[1])),
      p50_ms_c200: ms('50'),
      p99_ms_c200: ms('99'),
      non_2xx: non2xx === null ? 0 : Number(non2xx[1]),
    };
  } catch (e) {
    process.stderr.write(`wrk failed: ${(e as Error).message}\n`);
    return undefined;
  }
}

/** Optional Go client: hey against /validate with the Deployment review. */
async function runHey(
  hey: string,
  port: number,
  mix: readonly BenchRequest[],
  dir: string,
  cpu: number | undefined,
): Promise<Record<string, number> | undefined> {
  const first = mix.find((r) => r.label === 'deployment-validate') as BenchRequest;
  const file = join(dir, 'deployment.json');
  await writeFile(file, first.body);
  const seconds = Math.max(1, Math.round(MEASURE_MS / 1000));
  const args = [
    '-z',
    `${seconds}s`,
    '-c',
    '200',
    '-m',
    'POST',
    '-T',
    'application/json',
    '-D',
    file,
    `https://127.0.0.1:${port}/validate`,
  ];
  const [bin, argv] =
    cpu === undefined ? [hey, args] : ['taskset', ['-c', String(cpu), hey, ...args]];
  try {
    const { stdout } = await run(bin, argv, { timeout: 60_000 });
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
    const pct = (p: string): number => {
      const m = new RegExp(`${p}% in ([\\d.]+) secs`).exec(stdout);
      return m === null ? NaN : round(Number(m[1]) * 1000);
    };
    return {
      rps_c200: rps === null ? NaN : Math.round(Number(rps[1])),
      p50_ms_c200: pct('50'),
      p99_ms_c200: pct('99'),
    };
  } catch (e) {
    process.stderr.write(`hey failed: ${(e as Error).message}\n`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(os.tmpdir(), 'erpguard-bench-webhook-'));
  const children: ChildProcess[] = [];
  try {
    const tls = await makeCertificate(dir);
    const ca = await readFile(tls.ca, 'utf8');
    const cpus = os.availableParallelism();
    const taskset = await which('taskset');
    // Server on the last core, load generator on the others (or the same one on a 1-core box).
    const serverCpu = taskset !== undefined ? cpus - 1 : undefined;
    const clientCpu = taskset !== undefined && cpus > 1 ? 0 : undefined;
    if (clientCpu !== undefined)
      await run('taskset', ['-pc', String(clientCpu), String(process.pid)]).catch(() => undefined);

    const loadAtStart = os.loadavg();
    const snapshot = buildSnapshot(new Date());
    const mix = requestMix(snapshot, new Date());
    const sizes = [...new Set(mix.map((r) => r.label))].map((label) => {
      const bodies = mix.filter((r) => r.label === label);
      return [
        label,
        Math.round(bodies.reduce((s, r) => s + r.body.length, 0) / bodies.length),
      ] as const;
    });
    process.stdout.write(
      `webhook benchmark${quick ? ' (quick)' : ''}: ${mix.length} distinct reviews, avg bytes ${sizes.map(([l, n]) => `${l}=${n}`).join(' ')}; server on cpu ${serverCpu ?? 'any'}\n`,
    );

    const results: Record<string, LevelResult[]> = {};
    for (const mode of ['baseline', 'erpguard'] as const) {
      const { child, port } = await startServer(mode, tls.cert, tls.key, serverCpu);
      children.push(child);
      results[mode] = [];
      for (const c of LEVELS) {
        const r = await drive(child, port, ca, mix, c, MEASURE_MS, mode === 'erpguard');
        results[mode].push(r);
        process.stdout.write(
          `  ${mode.padEnd(8)} c=${String(c).padStart(3)}  ${String(r.rps).padStart(6)} req/s  p50 ${r.p50_ms.toFixed(2)} ms  p99 ${r.p99_ms.toFixed(2)} ms  p99.9 ${r.p999_ms.toFixed(2)} ms  server cpu ${r.server_cpu_us_per_req} µs/req  errors ${r.errors}\n`,
        );
      }
      if (mode === 'erpguard') {
        const wrk = await which('wrk');
        const hey = await which('hey');
        if (wrk !== undefined)
          results['wrk'] = [await runWrk(wrk, port, mix, dir, clientCpu)].filter(
            (x) => x !== undefined,
          ) as unknown as LevelResult[];
        if (hey !== undefined)
          results['hey'] = [await runHey(hey, port, mix, dir, clientCpu)].filter(
            (x) => x !== undefined,
          ) as unknown as LevelResult[];
      }
      child.disconnect();
      await new Promise((r) => child.once('exit', r));
    }

    const at = (mode: string, c: number): LevelResult =>
      (results[mode] ?? []).find((r) => r.concurrency === c) as LevelResult;
    const eg200 = at('erpguard', 200);
    const eg50 = at('erpguard', 50);
    const base200 = at('baseline', 200);
    const wrk = (results['wrk'] as unknown as Record<string, number>[] | undefined)?.[0];
    const hey = (results['hey'] as unknown as Record<string, number>[] | undefined)?.[0];
    const out = {
      benchmark: 'webhook',
      generatedAt: new Date().toISOString(),
      quick,
      node: process.version,
      cpus,
      server_cpu: serverCpu ?? null,
      measure_ms: MEASURE_MS,
      request_bytes: Object.fromEntries(sizes),
      rps_c50: eg50.rps,
      p50_ms_c50: eg50.p50_ms,
      p99_ms_c50: eg50.p99_ms,
      rps_c200: eg200.rps,
      p50_ms_c200: eg200.p50_ms,
      p99_ms_c200: eg200.p99_ms,
      errors: eg50.errors + eg200.errors,
      // Load-independent figures: what one core of the server spends per request, the throughput
      // that allows on an otherwise idle core, and the mean latency that throughput implies at 200
      // requests in flight (Little's law) - the floor for p99 at c=200.
      server_cpu_us_per_req_c200: eg200.server_cpu_us_per_req,
      baseline_server_cpu_us_per_req_c200: base200.server_cpu_us_per_req,
      single_core_capacity_rps: Math.round(1e6 / eg200.server_cpu_us_per_req),
      little_law_mean_ms_c200_at_capacity: round((200 * eg200.server_cpu_us_per_req) / 1000, 2),
      load_average_at_start: loadAtStart.map((x) => round(x, 2)),
      target: { p99_ms_c200: TARGET_P99_MS_C200, met: eg200.p99_ms <= TARGET_P99_MS_C200 },
      erpguard: results['erpguard'],
      baseline: results['baseline'],
      ratios_vs_baseline: {
        rps_c200: round(eg200.rps / base200.rps, 2),
        p99_c200: round(eg200.p99_ms / base200.p99_ms, 2),
        server_cpu_per_req_c200: round(
          eg200.server_cpu_us_per_req / base200.server_cpu_us_per_req,
          2,
        ),
      },
      ...(wrk !== undefined ? { wrk } : {}),
      ...(hey !== undefined ? { hey } : {}),
    };
    process.stdout.write(
      `  erpguard/baseline at c=200: throughput ${out.ratios_vs_baseline.rps_c200}x, p99 ${out.ratios_vs_baseline.p99_c200}x\n` +
        (wrk !== undefined
          ? `  wrk c=200: ${wrk['rps_c200']} req/s, p50 ${wrk['p50_ms_c200']} ms, p99 ${wrk['p99_ms_c200']} ms\n`
          : '') +
        (hey !== undefined
          ? `  hey c=200: ${hey['rps_c200']} req/s, p99 ${hey['p99_ms_c200']} ms\n`
          : '') +
        `  server cpu per request at c=200: ${eg200.server_cpu_us_per_req} µs (baseline ${base200.server_cpu_us_per_req} µs) -> ${out.single_core_capacity_rps} req/s per idle core; Little's law mean at c=200: ${out.little_law_mean_ms_c200_at_capacity} ms\n` +
        `  load average at start: ${out.load_average_at_start.join(' ')} on ${cpus} cpus\n` +
        `  target p99 <= ${TARGET_P99_MS_C200} ms at c=200: ${out.target.met ? 'met' : 'NOT met'}\n`,
    );
    const resultsDir = new URL('../../../bench/results/', import.meta.url);
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(new URL('webhook.json', resultsDir), JSON.stringify(out, null, 2) + '\n');
    process.stdout.write('wrote bench/results/webhook.json\n');
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(
    `bench-webhook failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
  );
  process.exit(1);
});
