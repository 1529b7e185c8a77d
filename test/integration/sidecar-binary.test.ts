/**
 * cmd/sidecar as a real process, configured from a file: it authenticates with a token file,
 * gets its certificate over gRPC, receives its policy snapshot and serves its admin endpoints.
 * Needs the compiled binary (`make test` builds first).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createCertificateAuthority, MemoryCaKeyStore } from '../../pkg/ca/index.js';
import {
  PolicyIndex,
  startIdentityServer,
  StaticTokenAuthenticator,
} from '../../pkg/identity/index.js';
import type { IdentityServer } from '../../pkg/identity/index.js';
import { silentLogger } from '../../pkg/telemetry/logger.js';
import { buildPolicy } from '../builders/policy.js';

const BINARY = 'dist/cmd/sidecar/main.js';
let dir = '';
let server: IdentityServer | undefined;
let child: ChildProcess | undefined;
let output = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'erpguard-sidecar-bin-'));
  const ca = await createCertificateAuthority({
    store: new MemoryCaKeyStore(),
    trustDomain: 'cluster.local',
  });
  const index = new PolicyIndex({ trustDomain: 'cluster.local' });
  index.setTrustBundle(ca.trustBundlePem());
  index.applyPolicies([buildPolicy()]);
  const authenticator = new StaticTokenAuthenticator([
    { token: 'token-of-finance', namespace: 'erp', serviceAccount: 'finance', module: 'finance' },
  ]);
  index.setIdentityBindings(authenticator.bindings());
  server = await startIdentityServer({
    ca,
    authenticator,
    policyIndex: index,
    registry: new Registry(),
    logger: silentLogger(),
    listen: { host: '127.0.0.1', port: 0 },
  });
  await writeFile(join(dir, 'token'), 'token-of-finance\n');
  await writeFile(join(dir, 'ca.crt'), ca.trustBundlePem());
});

afterAll(async () => {
  child?.kill('SIGKILL');
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('cmd/sidecar', () => {
  it('starts from a config file, gets a certificate and the policy snapshot, and stops on SIGTERM', async () => {
    expect(existsSync(BINARY)).toBe(true);
    const config = join(dir, 'sidecar.yaml');
    await writeFile(
      config,
      [
        'module: finance',
        'namespace: erp',
        `controller: localhost:${server?.port ?? 0}`,
        'app-port: 9',
        'inbound-port: 0',
        'outbound-port: 0',
        'admin-port: 0',
        `token-file: ${join(dir, 'token')}`,
        `trust-bundle-file: ${join(dir, 'ca.crt')}`,
        `audit-log: ${join(dir, 'audit.log')}`,
      ].join('\n'),
    );
    child = spawn(process.execPath, [BINARY, '--config', config], {
      env: { ...process.env, ERPGUARD_LOG_LEVEL: 'info' },
    });
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line:\n${output}`)), 20_000);
      const poll = setInterval(() => {
        const line = output.split('\n').find((l) => l.includes('"erpguard-proxy ready"'));
        if (line) {
          clearTimeout(timer);
          clearInterval(poll);
          resolve(JSON.parse(line) as Record<string, unknown>);
        }
      }, 50);
    });
    const admin = Number(started['admin']);
    expect(admin).toBeGreaterThan(0);
    const metrics = await get(`http://127.0.0.1:${admin}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/erpguard_cert_expiration_timestamp_seconds/);
    const exited = new Promise<number | null>((resolve) =>
      child?.once('exit', (code) => resolve(code)),
    );
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 40_000);

  it('refuses a config file with an unknown setting, naming it', async () => {
    const config = join(dir, 'bad.yaml');
    await writeFile(config, 'module: finance\nmoduel: crm\n');
    const bad = spawn(process.execPath, [BINARY, '--config', config]);
    let stderr = '';
    bad.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => bad.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/^erpguard-proxy: InvalidConfig: .*unknown setting "moduel"/);
  });
});
