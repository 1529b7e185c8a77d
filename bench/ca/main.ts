/**
 * CA benchmark (`make bench-ca`).
 *
 * 1. Signing throughput on one core (this process, single-threaded; the signing path is
 *    synchronous): parse + verify the CSR, build the certificate with forge's ASN.1, sign with
 *    Node's native crypto. Side by side with node-forge's pure-JS path (parse + verify + build +
 *    sign with forge), both with an RSA-2048 CA and RSA-2048 CSRs, and the ratio. The production
 *    default (EC P-256 CA, EC P-256 workload keys) is the headline `certs_per_second`.
 * 2. SignCertificate over gRPC + TLS on loopback: the identity server in its own process (pinned
 *    to one core with taskset when available), 50 concurrent clients in this process, each with
 *    its own identity, connection and pre-made CSRs; p50/p99 latency, throughput, and the
 *    server's CPU time per request.
 *
 * Writes bench/results/ca.json. `--quick` shortens every phase (smoke test).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import forge from 'node-forge';

import {
  MemoryCaKeyStore,
  buildCsr,
  createCertificateAuthority,
  generateKeysSync,
  type CertificateAuthority,
  type KeyType,
} from '../../pkg/ca/index.js';
import {
  PolicyIndex,
  StaticTokenAuthenticator,
  startIdentityServer,
} from '../../pkg/identity/index.js';
import { methods, unary } from '../../pkg/proto/erpguard-proto.js';
import { channelCredentials, channelOptions } from '../../pkg/workload-identity/tls.js';

const quick = process.argv.includes('--quick');
const SIGN_MS = quick ? 500 : 3_000;
const GRPC_WARMUP_MS = quick ? 500 : 2_000;
const GRPC_MEASURE_MS = quick ? 1_500 : 10_000;
const CLIENTS = 50;
const TARGET_CERTS_PER_SECOND = 300;
const IDENTITY = { namespace: 'erp', serviceAccount: 'finance' };
const SERVER_IDENTITY = { namespace: 'erpguard', serviceAccount: 'erpguard-controller' };
const SERVER_SPIFFE_ID = 'spiffe://cluster.local/ns/erpguard/sa/erpguard-controller';

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

/** Runs `work` repeatedly for `ms`; returns operations per second. */
function rate(ms: number, work: (i: number) => void): number {
  for (let i = 0; i < 20; i++) work(i); // warm-up (JIT, caches)
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    work(n);
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

function csrs(keyType: KeyType, count: number): string[] {
  return Array.from({ length: count }, () => buildCsr(generateKeysSync(keyType).privateKey));
}

async function nativeRate(caKey: KeyType, csrKey: KeyType): Promise<number> {
  const ca = await createCertificateAuthority({
    store: new MemoryCaKeyStore(),
    root: { keyType: caKey },
  });
  const pool = csrs(csrKey, 32);
  return rate(SIGN_MS, (i) => {
    ca.sign({ csrPem: pool[i % pool.length] ?? '', identity: IDENTITY });
  });
}

/** The same job done entirely by node-forge: CSR parse + verify, certificate build + RSA sign. */
function forgeRate(): number {
  const keyPem = generateKeysSync('rsa-2048')
    .privateKey.export({ type: 'pkcs1', format: 'pem' })
    .toString();
  const caKey = forge.pki.privateKeyFromPem(keyPem);
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = forge.pki.setRsaPublicKey(caKey.n, caKey.e);
  caCert.serialNumber = '01';
  caCert.validity.notBefore = new Date();
  caCert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600_000);
  const caName = [{ name: 'commonName', value: 'forge root' }];
  caCert.setSubject(caName);
  caCert.setIssuer(caName);
  caCert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }]);
  caCert.sign(caKey, forge.md.sha256.create());
  const pool = csrs('rsa-2048', 32);
  const spiffeId = 'spiffe://cluster.local/ns/erp/sa/finance';
  return rate(SIGN_MS, (i) => {
    const csr = forge.pki.certificationRequestFromPem(pool[i % pool.length] ?? '');
    if (!csr.verify()) throw new Error('forge: CSR does not verify');
    const cert = forge.pki.createCertificate();
    cert.publicKey = csr.publicKey as forge.pki.PublicKey;
    cert.serialNumber = forge.util
      .bytesToHex(forge.random.getBytesSync(16))
      .replace(/^[89a-f]/, '1');
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + 3600_000);
    cert.setSubject([{ name: 'organizationName', value: 'erpguard' }]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: spiffeId }] },
    ]);
    cert.sign(caKey, forge.md.sha256.create());
    forge.pki.certificateToPem(cert);
  });
}

// === gRPC phase: server process ===

const tokenFor = (i: number): string => `bench-token-${i}`;

async function serve(): Promise<void> {
  const ca: CertificateAuthority = await createCertificateAuthority({
    store: new MemoryCaKeyStore(),
  });
  const authenticator = new StaticTokenAuthenticator(
    Array.from({ length: CLIENTS }, (_, i) => ({
      token: tokenFor(i),
      namespace: 'erp',
      serviceAccount: `workload-${i}`,
      module: `module-${i}`,
    })),
  );
  const server = await startIdentityServer({
    ca,
    authenticator,
    policyIndex: new PolicyIndex(),
    listen: { host: '127.0.0.1', port: 0 },
    serving: { identity: SERVER_IDENTITY },
    // A benchmark measures the service, not the per-identity abuse limit.
    limits: { signPerSecond: 1e9, signBurst: 1e9, maxConcurrentSigns: 1e6 },
  });
  out(JSON.stringify({ port: server.port, bundle: ca.trustBundlePem() }));
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line === 'cpu') {
      const usage = process.cpuUsage();
      out(JSON.stringify({ cpuMicros: usage.user + usage.system }));
    }
  }
  await server.close();
}

// === gRPC phase: clients ===

interface ServerHandle {
  port: number;
  bundle: string;
  cpu(): Promise<number>;
  stop(): void;
  pinned: boolean;
}

async function startServerProcess(): Promise<ServerHandle> {
  const self = fileURLToPath(import.meta.url);
  let pinned = false;
  let command = process.execPath;
  let args = [self, '--serve'];
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' });
    if (os.cpus().length > 1) {
      command = 'taskset';
      args = ['-c', String(os.cpus().length - 1), process.execPath, ...args];
      pinned = true;
    }
  } catch {
    // no taskset: the server shares cores with the clients
  }
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const iterator = lines[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const result: IteratorResult<string> = await iterator.next();
    if (result.done === true) throw new Error('server process exited');
    return result.value;
  };
  const hello = JSON.parse(await next()) as { port: number; bundle: string };
  return {
    ...hello,
    pinned,
    cpu: async () => {
      child.stdin.write('cpu\n');
      return (JSON.parse(await next()) as { cpuMicros: number }).cpuMicros;
    },
    stop: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

interface GrpcResult {
  requests: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  server_cpu_us_per_req: number;
  server_pinned: boolean;
}

async function grpcPhase(): Promise<GrpcResult> {
  const server = await startServerProcess();
  const target = `127.0.0.1:${server.port}`;
  try {
    const pool = csrs('ec-p256', 64);
    const clients = Array.from({ length: CLIENTS }, (_, i) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${tokenFor(i)}`);
      const connection = { target, serverSpiffeId: SERVER_SPIFFE_ID };
      const client = new grpc.Client(
        target,
        channelCredentials(connection, server.bundle),
        channelOptions(connection),
      );
      return { client, metadata };
    });
    let measuring = false;
    let stop = false;
    const latencies: number[] = [];
    let errors = 0;
    let counter = 0;
    const loop = async (c: (typeof clients)[number]): Promise<void> => {
      while (!stop) {
        const started = performance.now();
        try {
          await unary(
            c.client,
            methods.signCertificate,
            { csr: pool[counter++ % pool.length] ?? '', ttlSeconds: 0 },
            c.metadata,
            {
              deadline: Date.now() + 10_000,
            },
          );
          if (measuring) latencies.push(performance.now() - started);
        } catch {
          if (measuring) errors++;
        }
      }
    };
    const loops = clients.map((c) => loop(c));
    await new Promise((r) => setTimeout(r, GRPC_WARMUP_MS));
    const cpuBefore = await server.cpu();
    measuring = true;
    const start = performance.now();
    await new Promise((r) => setTimeout(r, GRPC_MEASURE_MS));
    measuring = false;
    const elapsed = (performance.now() - start) / 1000;
    const cpuAfter = await server.cpu();
    stop = true;
    await Promise.all(loops);
    for (const c of clients) c.client.close();
    latencies.sort((a, b) => a - b);
    return {
      requests: latencies.length,
      errors,
      rps: round(latencies.length / elapsed, 0),
      p50_ms: round(percentile(latencies, 50)),
      p90_ms: round(percentile(latencies, 90)),
      p99_ms: round(percentile(latencies, 99)),
      max_ms: round(latencies[latencies.length - 1] ?? Number.NaN),
      server_cpu_us_per_req: round((cpuAfter - cpuBefore) / Math.max(1, latencies.length), 1),
      server_pinned: server.pinned,
    };
  } finally {
    server.stop();
  }
}

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

async function main(): Promise<void> {
  const loadAverage = os.loadavg().map((n) => round(n, 2));
  out(
    `erpguard CA benchmark${quick ? ' (quick)' : ''} — node ${process.version}, ${os.cpus().length} CPUs, load ${loadAverage.join(' ')}`,
  );
  // Warm the CA modules and OpenSSL once so the first measured phase is not penalised.
  createPrivateKey(generateKeysSync('ec-p256').privateKey.export({ type: 'pkcs8', format: 'pem' }));

  const nativeEc = await nativeRate('ec-p256', 'ec-p256');
  out(`  native  EC P-256 CA, EC P-256 CSRs : ${nativeEc.toFixed(0)} certs/s`);
  const nativeEcRsaCsr = await nativeRate('ec-p256', 'rsa-2048');
  out(`  native  EC P-256 CA, RSA-2048 CSRs : ${nativeEcRsaCsr.toFixed(0)} certs/s`);
  const nativeRsa = await nativeRate('rsa-2048', 'rsa-2048');
  out(`  native  RSA-2048 CA, RSA-2048 CSRs : ${nativeRsa.toFixed(0)} certs/s`);
  const forgeRsa = forgeRate();
  out(`  forge   RSA-2048 CA, RSA-2048 CSRs : ${forgeRsa.toFixed(0)} certs/s (pure JS)`);
  out(
    `  ratio native/forge (RSA-2048 both) : ${(nativeRsa / forgeRsa).toFixed(1)}x; default EC path vs forge: ${(nativeEc / forgeRsa).toFixed(1)}x`,
  );

  const grpcResult = await grpcPhase();
  out(
    `  gRPC SignCertificate, ${CLIENTS} concurrent clients: ${grpcResult.rps} req/s, p50 ${grpcResult.p50_ms} ms, p99 ${grpcResult.p99_ms} ms, ` +
      `${grpcResult.errors} errors, server CPU ${grpcResult.server_cpu_us_per_req} µs/req${grpcResult.server_pinned ? ' (server pinned to one core)' : ''}`,
  );

  const result = {
    benchmark: 'ca',
    generatedAt: new Date().toISOString(),
    quick,
    node: process.version,
    cpus: os.cpus().length,
    load_average_at_start: loadAverage,
    sign_measure_ms: SIGN_MS,
    certs_per_second: round(nativeEc, 0),
    certs_per_second_detail: {
      native_ec_p256_ca_ec_p256_csr: round(nativeEc, 0),
      native_ec_p256_ca_rsa2048_csr: round(nativeEcRsaCsr, 0),
      native_rsa2048_ca_rsa2048_csr: round(nativeRsa, 0),
      forge_rsa2048_ca_rsa2048_csr: round(forgeRsa, 0),
      ratio_native_vs_forge_rsa2048: round(nativeRsa / forgeRsa, 2),
      ratio_default_ec_vs_forge_rsa2048: round(nativeEc / forgeRsa, 2),
    },
    grpc_concurrency: CLIENTS,
    grpc_measure_ms: GRPC_MEASURE_MS,
    grpc_rps: grpcResult.rps,
    grpc_p50_ms: grpcResult.p50_ms,
    grpc_p90_ms: grpcResult.p90_ms,
    grpc_p99_ms: grpcResult.p99_ms,
    grpc_max_ms: grpcResult.max_ms,
    grpc_requests: grpcResult.requests,
    grpc_errors: grpcResult.errors,
    grpc_server_cpu_us_per_req: grpcResult.server_cpu_us_per_req,
    grpc_server_pinned: grpcResult.server_pinned,
    target: { certs_per_second: TARGET_CERTS_PER_SECOND, met: nativeEc >= TARGET_CERTS_PER_SECOND },
  };
  const dir = join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca.json'), `${JSON.stringify(result, null, 2)}\n`);
  out(
    `  wrote ${join(dir, 'ca.json')}; target ${TARGET_CERTS_PER_SECOND} certs/s ${result.target.met ? 'met' : 'NOT met'}`,
  );
}

if (process.argv.includes('--serve')) {
  await serve();
} else {
  await main();
}
