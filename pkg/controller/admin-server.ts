/**
 * The controller's admin HTTP server: `/healthz` (the process serves requests), `/readyz` (every
 * readiness check passes: caches synced, plus whatever the process adds, e.g. webhook TLS
 * loaded), and `/metrics` (Prometheus text format). Plain HTTP, meant for kubelet probes and
 * scraping inside the cluster; bind it to 0.0.0.0 in a pod, 127.0.0.1 elsewhere.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Registry } from 'prom-client';

import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

/** A named readiness check: undefined when ready, else a short reason. */
export type ReadinessCheck = () => string | undefined;

export interface AdminServerOptions {
  registry: Registry;
  host?: string;
  /** 0 picks a free port (tests). */
  port: number;
  logger?: Logger;
}

export class AdminServer {
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly server: Server;
  private readonly log: Logger;
  private shuttingDown = false;

  constructor(private readonly options: AdminServerOptions) {
    this.log = options.logger ?? silentLogger();
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.log.error('admin request failed', { err: error, path: req.url });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    // Probes and scrapes are tiny; a slow client must not hold a socket for long.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
  }

  addReadinessCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Readiness turns false at once on shutdown, so the endpoint is removed from Services first. */
  markShuttingDown(): void {
    this.shuttingDown = true;
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Reasons the process is not ready (empty: ready). */
  notReady(): string[] {
    const reasons: string[] = [];
    if (this.shuttingDown) reasons.push('shutting down');
    for (const [name, check] of this.checks) {
      let reason: string | undefined;
      try {
        reason = check();
      } catch (error) {
        reason = `check failed: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (reason !== undefined) reasons.push(`${name}: ${reason}`);
    }
    return reasons;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/healthz':
      case '/livez':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok\n');
        return;
      case '/readyz': {
        const reasons = this.notReady();
        res.writeHead(reasons.length === 0 ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(reasons.length === 0 ? 'ok\n' : `${reasons.join('\n')}\n`);
        return;
      }
      case '/metrics': {
        const body = await this.options.registry.metrics();
        res.writeHead(200, { 'content-type': this.options.registry.contentType });
        res.end(body);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
    }
  }
}
