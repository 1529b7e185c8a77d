/**
 * The benchmark's server process (forked by main.ts, pinned to one core with taskset when
 * available). `erpguard` runs the real webhook server; `baseline` is the floor: node:https that
 * reads the body, parses the AdmissionReview and answers `allowed: true`, with no express and no
 * admission logic. Reports `{ port }` over IPC and exits when the parent disconnects.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

import { createLogger } from '../../pkg/telemetry/logger.js';
import { createWebhookServer } from '../../pkg/webhook/index.js';

import { benchConfig, buildSnapshot } from './workload.js';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

async function main(): Promise<void> {
  const mode = arg('mode');
  const certFile = arg('cert');
  const keyFile = arg('key');
  let port: number;
  let close: () => Promise<void>;
  if (mode === 'erpguard') {
    const snapshot = buildSnapshot(new Date());
    const server = await createWebhookServer({
      tlsCertFile: certFile,
      tlsKeyFile: keyFile,
      snapshotSource: () => snapshot,
      config: benchConfig,
      // Production level: decisions of allowed requests are debug lines and not written.
      logger: createLogger('webhook', { level: 'info' }),
      tlsReloadPollMs: 0,
    });
    port = server.port;
    close = () => server.close(1000);
  } else {
    const server = createServer(
      { cert: readFileSync(certFile), key: readFileSync(keyFile) },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            request: { uid: string };
          };
          const text = JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: { uid: review.request.uid, allowed: true },
          });
          res.writeHead(200, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(text),
          });
          res.end(text);
        });
      },
    );
    server.keepAliveTimeout = 95_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    close = () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
  }
  const stop = (): void => {
    void close().finally(() => process.exit(0));
  };
  // CPU time of this process, so the parent can compute CPU per request: a figure that holds
  // even when the machine is shared and wall-clock latency is not.
  process.on('message', (m: { cmd?: string }) => {
    if (m.cmd === 'cpu') {
      const u = process.cpuUsage();
      process.send?.({ cpuMicros: u.user + u.system });
    }
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  process.send?.({ port });
}

main().catch((e: unknown) => {
  process.stderr.write(`bench server failed: ${String(e)}\n`);
  process.exit(1);
});
