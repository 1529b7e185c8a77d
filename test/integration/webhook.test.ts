/**
 * The admission webhook over real HTTPS on 127.0.0.1, with a CA and serving certificates made by
 * `openssl`: the AdmissionReview contract (uid echo, no patch from /validate, 400s, 413), health
 * and readiness, metrics, structured logs with the uid, and certificate reload without restart.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

import type {
  AdmissionConfig,
  AdmissionReviewResponse,
  Snapshot,
} from '../../pkg/admission/index.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import { createMetricsRegistry } from '../../pkg/telemetry/metrics.js';
import { createWebhookServer } from '../../pkg/webhook/index.js';
import type { WebhookServer } from '../../pkg/webhook/index.js';

const run = promisify(execFile);
const { applyPatch } = fastJsonPatch;
type Json = Record<string, unknown>;

const FIXTURES = new URL('../fixtures/admission/', import.meta.url);
const fixtureText = (name: string): Promise<string> => readFile(new URL(name, FIXTURES), 'utf8');
const fixture = async (name: string): Promise<Json> => JSON.parse(await fixtureText(name)) as Json;

const config: Omit<AdmissionConfig, 'now'> = {
  reviewers: { groups: ['erp-reviewers'] },
  ownNamespace: 'erpguard-system',
  sidecar: { image: 'registry.example/erpguard/proxy:0.1.0' },
  trustDomain: 'cluster.local',
  controllerAddress: 'erpguard-controller.erpguard-system.svc:15012',
};

/** A throw-away CA and leaf certificates for 127.0.0.1, made with openssl. */
class Pki {
  constructor(readonly dir: string) {}

  static async create(): Promise<Pki> {
    const pki = new Pki(await mkdtemp(join(tmpdir(), 'erpguard-webhook-test-')));
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=erpguard-test-ca',
      '-keyout',
      pki.path('ca.key'),
      '-out',
      pki.path('ca.crt'),
    ]);
    return pki;
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Issues a leaf for 127.0.0.1 into `<name>.crt` / `<name>.key`; returns its serial (hex). */
  async issue(name: string): Promise<string> {
    const ext = this.path(`${name}.ext`);
    await writeFile(
      ext,
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    );
    await run('openssl', [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      this.path(`${name}.key`),
      '-out',
      this.path(`${name}.csr`),
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      this.path(`${name}.csr`),
      '-CA',
      this.path('ca.crt'),
      '-CAkey',
      this.path('ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      ext,
      '-out',
      this.path(`${name}.crt`),
    ]);
    const { stdout } = await run('openssl', [
      'x509',
      '-in',
      this.path(`${name}.crt`),
      '-noout',
      '-serial',
    ]);
    return stdout
      .trim()
      .replace(/^serial=/, '')
      .toUpperCase();
  }
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => Json;
}

let pki: Pki;
let server: WebhookServer;
let snapshot: Snapshot | undefined;
let agent: Agent;
const logLines: Json[] = [];
const registry = createMetricsRegistry();

function call(
  method: string,
  path: string,
  body?: string | Buffer,
  opts: { chunked?: boolean } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/json' };
    if (body !== undefined && opts.chunked !== true)
      headers['content-length'] = Buffer.byteLength(body);
    const req = request(
      { host: '127.0.0.1', port: server.port, method, path, agent, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            json: () => JSON.parse(text) as Json,
          });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined && opts.chunked === true) {
      // Several writes without Content-Length: Transfer-Encoding chunked.
      const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
      const step = 1024 * 1024;
      for (let i = 0; i < buf.length; i += step) req.write(buf.subarray(i, i + step));
      req.end();
    } else {
      req.end(body);
    }
  });
}

const post = (path: string, body: unknown): Promise<Reply> =>
  call('POST', path, typeof body === 'string' ? body : JSON.stringify(body));

/** Serial of the certificate the server presents to a new TLS connection. */
function servedSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(
      { host: '127.0.0.1', port: server.port, rejectUnauthorized: false, servername: 'localhost' },
      () => {
        const serial = s.getPeerCertificate().serialNumber.toUpperCase();
        s.end();
        resolve(serial);
      },
    );
    s.on('error', reject);
  });
}

async function eventually<T>(
  probe: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  pki = await Pki.create();
  await pki.issue('serving');
  snapshot = JSON.parse(await fixtureText('snapshot.json')) as Snapshot;
  server = await createWebhookServer({
    tlsCertFile: pki.path('serving.crt'),
    tlsKeyFile: pki.path('serving.key'),
    snapshotSource: () => snapshot,
    config,
    registry,
    logger: createLogger('webhook', {
      level: 'debug',
      sink: (line) => logLines.push(JSON.parse(line) as Json),
    }),
    clock: () => new Date('2026-09-01T00:00:00Z'),
    tlsReloadDebounceMs: 50,
    tlsReloadPollMs: 0,
  });
  agent = new Agent({
    keepAlive: true,
    ca: await readFile(pki.path('ca.crt')),
    servername: 'localhost',
  });
}, 60_000);

afterAll(async () => {
  agent?.destroy();
  await server?.close();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

describe('webhook over HTTPS', () => {
  it('serves health, readiness and reports not-ready while caches are unsynced', async () => {
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await call('GET', '/readyz')).status).toBe(200);
    const saved = snapshot;
    snapshot = undefined;
    try {
      const r = await call('GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/caches not synced/);
      const review = await post('/validate', await fixture('deployment-create.json'));
      expect(review.status).toBe(200);
      const resp = review.json()['response'] as Json;
      expect(resp['allowed']).toBe(false);
      expect(resp['status']).toMatchObject({ code: 503 });
    } finally {
      snapshot = saved;
    }
  });

  it('denies with a 403 status, echoes uid, apiVersion and kind, and never patches from /validate', async () => {
    const review = await fixture('deployment-create-gaps.json');
    // The API server appends the webhook timeout as a query parameter.
    const r = await post('/validate?timeout=3s', review);
    expect(r.status).toBe(200);
    const body = r.json() as unknown as AdmissionReviewResponse;
    expect(body.apiVersion).toBe('admission.k8s.io/v1');
    expect(body.kind).toBe('AdmissionReview');
    expect(body.response.uid).toBe((review['request'] as Json)['uid']);
    expect(body.response.allowed).toBe(false);
    expect(body.response.status?.code).toBe(403);
    expect(body.response.status?.message).toMatch(/payroll: NoPolicy/);
    expect(body.response.patch).toBeUndefined();
    expect(body.response.patchType).toBeUndefined();
  });

  it('a Pod review sent to /validate gets no patch even though it would be injected', async () => {
    const body = (
      await post('/validate', await fixture('pod-create-replicaset.json'))
    ).json() as unknown as AdmissionReviewResponse;
    expect(body.response.patch).toBeUndefined();
    expect(body.response.allowed).toBe(false);
    expect(body.response.status?.message).toMatch(/SidecarMissing/);
  });

  it('/mutate returns a JSON patch that applies strictly and then passes /validate', async () => {
    const review = await fixture('pod-create-replicaset.json');
    const body = (await post('/mutate', review)).json() as unknown as AdmissionReviewResponse;
    expect(body.response.uid).toBe((review['request'] as Json)['uid']);
    expect(body.response.patchType).toBe('JSONPatch');
    const ops = JSON.parse(
      Buffer.from(body.response.patch ?? '', 'base64').toString('utf8'),
    ) as Operation[];
    const request = review['request'] as Json;
    const patched = applyPatch(structuredClone(request['object']), ops, true, false)
      .newDocument as Json;
    const init = (patched['spec'] as Json)['initContainers'] as Json[];
    expect(init[0]?.['name']).toBe('erpguard-proxy');
    const after = (
      await post('/validate', { ...review, request: { ...request, object: patched } })
    ).json() as unknown as AdmissionReviewResponse;
    expect(after.response.allowed).toBe(true);
  });

  it.each([
    ['malformed JSON', '{"apiVersion": "admission.k8s.io/v1", ', 'ParseError', undefined],
    ['an empty body', '', 'ParseError', undefined],
    ['a JSON array', '[]', 'InvalidDocument', ''],
    [
      'v1beta1',
      JSON.stringify({
        apiVersion: 'admission.k8s.io/v1beta1',
        kind: 'AdmissionReview',
        request: { uid: 'x' },
      }),
      'InvalidDocument',
      'apiVersion',
    ],
    [
      'the wrong kind',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod' }),
      'InvalidDocument',
      'kind',
    ],
    [
      'no request.uid',
      JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { operation: 'CREATE' },
      }),
      'InvalidDocument',
      'request.uid',
    ],
  ])('answers %s with HTTP 400 and a reason', async (_n, body, code, field) => {
    for (const path of ['/validate', '/mutate']) {
      const r = await post(path, body);
      expect(r.status).toBe(400);
      expect(r.json()['code']).toBe(code);
      expect(String(r.json()['message']).length).toBeGreaterThan(0);
      if (field !== undefined) expect(r.json()['field']).toBe(field);
    }
  });

  it('accepts a 7.5 MiB review and answers 413 above 8 MiB, with or without Content-Length', async () => {
    const review = await fixture('pod-create-replicaset.json');
    const request = review['request'] as Json;
    const withBlob = (bytes: number): string => {
      const obj = structuredClone(request['object']) as Json;
      ((obj['metadata'] as Json)['annotations'] as Json)['example.com/blob'] = 'z'.repeat(bytes);
      return JSON.stringify({ ...review, request: { ...request, object: obj } });
    };
    const ok = await post('/mutate', withBlob(7.5 * 1024 * 1024));
    expect(ok.status).toBe(200);
    expect((ok.json()['response'] as Json)['patch']).toBeDefined();
    const big = withBlob(9 * 1024 * 1024);
    const declared = await call('POST', '/validate', big);
    expect(declared.status).toBe(413);
    expect(declared.json()['code']).toBe('InputTooLarge');
    const chunked = await call('POST', '/validate', big, { chunked: true });
    expect(chunked.status).toBe(413);
    // The server is still fine afterwards.
    expect((await call('GET', '/healthz')).status).toBe(200);
  });

  it('rejects other methods and paths', async () => {
    expect((await call('GET', '/validate')).status).toBe(405);
    expect((await call('POST', '/nope', '{}')).status).toBe(404);
  });

  it('exports request counts by webhook, operation, kind and decision, and a histogram up to 3 s', async () => {
    await post('/validate', await fixture('deployment-create-gaps.json'));
    const text = (await call('GET', '/metrics')).text;
    expect(text).toMatch(
      /erpguard_admission_requests_total\{webhook="validate",operation="CREATE",kind="Deployment",decision="denied"\} [1-9]/,
    );
    expect(text).toMatch(
      /erpguard_admission_requests_total\{webhook="mutate",operation="CREATE",kind="Pod",decision="patched"\} [1-9]/,
    );
    expect(text).toMatch(
      /erpguard_admission_requests_total\{webhook="validate",operation="unknown",kind="unknown",decision="rejected"\} [1-9]/,
    );
    expect(text).toMatch(
      /erpguard_admission_duration_seconds_bucket\{le="3",webhook="validate"\} [1-9]/,
    );
    expect(text).toMatch(/erpguard_webhook_certificate_expiration_timestamp_seconds \d+/);
  });

  it('logs each decision as structured JSON carrying the request uid', async () => {
    const review = await fixture('deployment-create-gaps.json');
    const uid = (review['request'] as Json)['uid'];
    await post('/validate', review);
    const line = logLines.find((l) => l['uid'] === uid && l['decision'] === 'denied');
    expect(line).toMatchObject({
      msg: 'admission decision',
      webhook: 'validate',
      kind: 'Deployment',
      namespace: 'erp',
    });
    expect(line?.['reasons']).toEqual(expect.arrayContaining(['IntegrationNotVerified']));
  });

  it('reloads the serving certificate when the files change, and keeps it when they are broken', async () => {
    const before = await servedSerial();
    const next = await pki.issue('rotated');
    expect(next).not.toBe(before);
    // Replace atomically, as a Secret volume update does.
    await writeFile(pki.path('serving.key.tmp'), await readFile(pki.path('rotated.key')));
    await writeFile(pki.path('serving.crt.tmp'), await readFile(pki.path('rotated.crt')));
    await rename(pki.path('serving.key.tmp'), pki.path('serving.key'));
    await rename(pki.path('serving.crt.tmp'), pki.path('serving.crt'));
    expect(await eventually(servedSerial, (s) => s === next)).toBe(next);
    // Requests over the trusted agent still succeed with the new certificate.
    expect((await call('GET', '/healthz')).status).toBe(200);

    await writeFile(pki.path('serving.crt'), 'not a certificate');
    expect(await server.reloadTls()).toBe(false);
    expect(await servedSerial()).toBe(next);
    const text = (await call('GET', '/metrics')).text;
    expect(text).toMatch(/erpguard_webhook_tls_reloads_total\{result="success"\} [1-9]/);
    expect(text).toMatch(/erpguard_webhook_tls_reloads_total\{result="failure"\} [1-9]/);
  });
});
