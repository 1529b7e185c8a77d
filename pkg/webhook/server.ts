/**
 * The admission webhook's HTTPS adapter: express on https, `POST /validate` and `POST /mutate`
 * over the pure handlers in pkg/admission, `/healthz`, `/readyz`, `/metrics`.
 *
 * HTTP contract: a well-formed AdmissionReview always gets HTTP 200 with a response that echoes
 * `uid`, `apiVersion` and `kind` (a denial is `allowed: false`, never an HTTP error). Malformed
 * JSON, a wrong apiVersion/kind or a missing `request.uid` is HTTP 400 with `{code, message,
 * field}`; a body over the limit is 413. A bug in a handler is a denial with code 500 (fail
 * closed) and an error log carrying the uid.
 */
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import express from 'express';
import type { Registry } from 'prom-client';

import { ErrorCode } from '../errors/errors.js';
import {
  AdmissionDenial,
  mutateReview,
  parseAdmissionReview,
  reviewResponse,
  validateReview,
} from '../admission/index.js';
import type {
  AdmissionConfig,
  AdmissionResult,
  AdmissionReview,
  Snapshot,
} from '../admission/index.js';
import { createLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';
import { createMetricsRegistry } from '../telemetry/metrics.js';

import { DEFAULT_BODY_LIMIT_BYTES, readBody } from './body.js';
import { webhookMetrics } from './metrics.js';
import type { WebhookMetrics } from './metrics.js';
import { TlsReloader, loadTlsPair } from './tls-reloader.js';

export type WebhookName = 'validate' | 'mutate';

export interface WebhookServerOptions {
  tlsCertFile: string;
  tlsKeyFile: string;
  /**
   * The current cluster state, called once per request; return the same object until it changes
   * (it is indexed once per object). `undefined` means "caches not synced": /readyz answers 503
   * and admission requests are denied with CacheNotReady (fail closed; the API server retries).
   */
  snapshotSource: () => Snapshot | undefined;
  /** Everything but `now`, which is taken from `clock` for each request. */
  config: Omit<AdmissionConfig, 'now'>;
  /** Default: a new registry (then /metrics shows only the webhook's series). */
  registry?: Registry;
  /** Default: a JSON logger for component `webhook`. */
  logger?: Logger;
  /** Default 127.0.0.1 and an ephemeral port; the chart uses 0.0.0.0:8443. */
  listen?: { host?: string; port?: number };
  /** Default: the system clock. */
  clock?: () => Date;
  /** Default 8 MiB. */
  bodyLimitBytes?: number;
  /** Quiet time after a file event before reloading the certificate (default 250 ms). */
  tlsReloadDebounceMs?: number;
  /** Fallback poll of the certificate files (default 60 s; 0 disables). */
  tlsReloadPollMs?: number;
}

export interface WebhookServer {
  readonly port: number;
  readonly server: Server;
  /** Reloads the certificate files now; true when a new pair was installed. */
  reloadTls(): Promise<boolean>;
  /** Stops the watchers, stops accepting, closes idle connections, waits up to `graceMs` for the rest. */
  close(graceMs?: number): Promise<void>;
}

/** Kinds we expect; anything else is counted as `other` (label cardinality stays bounded). */
const KNOWN_KINDS = new Set([
  'Pod',
  'Deployment',
  'StatefulSet',
  'DaemonSet',
  'ReplicaSet',
  'Job',
  'CronJob',
  'ErpIntegrationPolicy',
  'Scale',
]);
const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);
/** Paths of the admission endpoints. */
const ADMISSION_PATHS = new Map<string, WebhookName>([
  ['/validate', 'validate'],
  ['/mutate', 'mutate'],
]);

/** The path of a request target: the API server appends `?timeout=3s`. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return '';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
};

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

interface Handling {
  logger: Logger;
  metrics: WebhookMetrics;
  snapshotSource: () => Snapshot | undefined;
  config: Omit<AdmissionConfig, 'now'>;
  clock: () => Date;
  bodyLimit: number;
}

function notReady(review: AdmissionReview): AdmissionResult {
  return {
    response: {
      uid: review.request.uid,
      allowed: false,
      status: {
        code: 503,
        reason: 'ServiceUnavailable',
        message: `erpguard: ${AdmissionDenial.CacheNotReady}: the webhook has not synced its caches yet; retry`,
      },
    },
    decision: 'error',
    findings: [{ code: AdmissionDenial.CacheNotReady, message: 'caches not synced' }],
  };
}

async function handleAdmission(
  h: Handling,
  webhook: WebhookName,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const started = process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  const reject = (
    status: 400 | 413,
    code: string,
    message: string,
    extra: Record<string, string> = {},
  ): void => {
    h.metrics.requests.inc({
      webhook,
      operation: 'unknown',
      kind: 'unknown',
      decision: 'rejected',
    });
    h.metrics.duration.labels(webhook).observe(seconds());
    h.logger.warn('admission request rejected', {
      webhook,
      status,
      code,
      reason: message,
      ...extra,
    });
    send(res, status, { code, message, ...extra });
  };

  const body = await readBody(req, h.bodyLimit);
  if (!body.ok) {
    reject(
      body.status,
      body.status === 413 ? ErrorCode.InputTooLarge : ErrorCode.ParseError,
      body.message,
    );
    return;
  }
  let json: unknown;
  try {
    json = JSON.parse(body.body.toString('utf8'));
  } catch (e) {
    reject(400, ErrorCode.ParseError, `the body is not JSON: ${(e as Error).message}`);
    return;
  }
  const parsed = parseAdmissionReview(json);
  if (!parsed.ok) {
    reject(400, parsed.code, parsed.message, {
      field: parsed.field,
      ...(parsed.uid !== undefined ? { uid: parsed.uid } : {}),
    });
    return;
  }
  const review = parsed.review;
  const r = review.request;
  let result: AdmissionResult;
  const snapshot = h.snapshotSource();
  if (snapshot === undefined) {
    result = notReady(review);
  } else {
    const config: AdmissionConfig = { ...h.config, now: h.clock() };
    result =
      webhook === 'validate'
        ? validateReview(review, snapshot, config)
        : mutateReview(review, snapshot, config);
  }
  if (webhook === 'validate') {
    // The contract, enforced at the edge too: a validating response never carries a patch.
    delete result.response.patch;
    delete result.response.patchType;
  }
  // Always echo the request's uid, whatever a handler did.
  result.response.uid = r.uid;
  send(res, 200, reviewResponse(result.response));

  const duration = seconds();
  const kind = KNOWN_KINDS.has(r.kind.kind) ? r.kind.kind : 'other';
  const operation = OPERATIONS.has(r.operation) ? r.operation : 'unknown';
  h.metrics.requests.inc({ webhook, operation, kind, decision: result.decision });
  h.metrics.duration.labels(webhook).observe(duration);
  const level =
    result.decision === 'error'
      ? 'error'
      : result.decision === 'denied' || result.decision === 'warned'
        ? 'info'
        : 'debug';
  if (h.logger.isLevelEnabled(level)) {
    h.logger[level]('admission decision', {
      uid: r.uid,
      webhook,
      operation: r.operation,
      kind: r.kind.kind,
      subResource: r.subResource,
      namespace: r.namespace,
      name: r.name,
      user: r.userInfo.username,
      dryRun: r.dryRun,
      decision: result.decision,
      skip: result.skip,
      reasons: result.findings.length > 0 ? result.findings.map((f) => f.code) : undefined,
      message: result.decision === 'error' ? result.findings[0]?.message : undefined,
      durationMs: Math.round(duration * 1e6) / 1e3,
    });
  }
}

/** The express app for everything but the admission routes (see createWebhookServer). */
function createWebhookApp(
  logger: Logger,
  ready: () => { ok: boolean; reason: string },
  registry: Registry,
): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok');
  });
  app.get('/readyz', (_req, res) => {
    const r = ready();
    res
      .status(r.ok ? 200 : 503)
      .type('text/plain')
      .send(r.ok ? 'ok' : r.reason);
  });
  app.get('/metrics', (_req, res) => {
    registry.metrics().then(
      (text) => {
        res.type(registry.contentType).send(text);
      },
      (e: unknown) => {
        logger.error('metrics collection failed', { error: e });
        res.status(500).type('text/plain').send('metrics collection failed');
      },
    );
  });
  app.use((req, res) => {
    const known = req.path === '/validate' || req.path === '/mutate';
    send(res, known ? 405 : 404, {
      code: ErrorCode.InvalidArgument,
      message: known
        ? `${req.method} is not allowed on ${req.path}; use POST`
        : `no route ${req.path}`,
    });
  });
  return app;
}

/** Starts the webhook server. Throws ErpguardError (FileUnreadable, InvalidConfig) when the certificate cannot be used. */
export async function createWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const logger = opts.logger ?? createLogger('webhook');
  const registry = opts.registry ?? createMetricsRegistry();
  const metrics = webhookMetrics(registry);
  const clock = opts.clock ?? ((): Date => new Date());

  const initial = await loadTlsPair(opts.tlsCertFile, opts.tlsKeyFile);
  metrics.certExpiry.set(initial.notAfterMs / 1000);

  const handling: Handling = {
    logger,
    metrics,
    snapshotSource: opts.snapshotSource,
    config: opts.config,
    clock,
    bodyLimit: opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
  };
  let closing = false;
  const ready = (): { ok: boolean; reason: string } => {
    if (closing) return { ok: false, reason: 'shutting down' };
    if (opts.snapshotSource() === undefined) return { ok: false, reason: 'caches not synced' };
    return { ok: true, reason: '' };
  };
  const app = createWebhookApp(logger, ready, registry);
  // The two admission routes are dispatched before express: its per-request machinery
  // (prototype swaps, router matching) cost as much CPU as the admission logic itself in
  // bench/webhook. Everything else (health, readiness, metrics, 404/405) goes through express.
  const server = createServer(
    { cert: initial.cert, key: initial.key, minVersion: 'TLSv1.2' },
    (req, res) => {
      const webhook = req.method === 'POST' ? ADMISSION_PATHS.get(pathOf(req.url)) : undefined;
      if (webhook === undefined) {
        app(req, res);
        return;
      }
      handleAdmission(handling, webhook, req, res).catch((e: unknown) => {
        // Only I/O can fail here (the handlers catch their own errors).
        logger.error('admission request failed', { webhook, error: e });
        if (!res.headersSent)
          send(res, 500, { code: ErrorCode.Internal, message: 'internal error' });
        else res.destroy();
      });
    },
  );
  // The API server reuses connections for up to 90 s idle; closing earlier causes resets.
  server.keepAliveTimeout = 95_000;
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;
  server.on('tlsClientError', (e: Error) =>
    logger.debug('TLS handshake failed', { error: e.message }),
  );

  const reloader = new TlsReloader(initial, {
    certFile: opts.tlsCertFile,
    keyFile: opts.tlsKeyFile,
    debounceMs: opts.tlsReloadDebounceMs ?? 250,
    pollMs: opts.tlsReloadPollMs ?? 60_000,
    apply: (pair) =>
      server.setSecureContext({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }),
    onResult: (r) => {
      if (!r.ok) {
        metrics.tlsReloads.inc({ result: 'failure' });
        logger.warn('webhook certificate reload failed; keeping the current one', {
          error: r.error,
        });
      } else if (r.changed) {
        metrics.tlsReloads.inc({ result: 'success' });
        metrics.certExpiry.set(r.pair.notAfterMs / 1000);
        logger.info('webhook certificate reloaded', {
          notAfter: new Date(r.pair.notAfterMs).toISOString(),
        });
      }
    },
  });

  const host = opts.listen?.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen?.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  reloader.start();
  const port = (server.address() as AddressInfo).port;
  logger.info('webhook listening', {
    host,
    port,
    notAfter: new Date(initial.notAfterMs).toISOString(),
  });

  return {
    port,
    server,
    reloadTls: () => reloader.reload(),
    close: async (graceMs = 5_000) => {
      closing = true;
      reloader.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, graceMs);
        timer.unref();
      });
      await Promise.race([closed, forced]);
      if (timer !== undefined) clearTimeout(timer);
      await closed;
    },
  };
}
