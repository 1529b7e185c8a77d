/**
 * Admin endpoints (port 15020): `/healthz` (live: fails only on what a restart fixes, a broken
 * audit sink), `/readyz` (certificate, policy snapshot and audit sink all usable: before the first
 * snapshot it is not ready), `/metrics`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export class AdminServer {
  private readonly server: Server;

  constructor(
    private readonly host: string,
    private readonly port: number,
    registry: Registry,
    readiness: () => ReadinessCheck,
    live: () => boolean = () => true,
  ) {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/healthz') {
        const ok = live();
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
          .end(ok ? 'ok\n' : 'audit sink broken\n');
      } else if (path === '/readyz') {
        const r = readiness();
        const body = JSON.stringify(r);
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(body);
      } else if (path === '/metrics') {
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
    this.server.headersTimeout = 5_000;
    this.server.requestTimeout = 10_000;
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, this.host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
