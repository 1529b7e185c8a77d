/**
 * Child process of the sidecar benchmark: `node process.js <config.json>` runs either the sample
 * app or one sidecar, prints `READY <json>` on stdout, and runs until killed.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import {
  staticDestinationResolver,
  type StaticDestination,
} from '../../pkg/sidecar/destinations.js';
import { startSidecar } from '../../pkg/sidecar/sidecar.js';
import type { PolicySnapshot, Source, TlsMaterial } from '../../pkg/sidecar/types.js';
import { silentLogger } from '../../pkg/telemetry/logger.js';

export type ProcessConfig =
  | { role: 'app' }
  | {
      role: 'sidecar';
      module: string;
      appPort: number;
      tls: TlsMaterial;
      policies: ErpIntegrationPolicy[];
      destinations: StaticDestination[];
      auditLogPath: string;
    };

const BODY = JSON.stringify({
  items: [
    { id: 42, name: 'Acme Industrial', iban: 'DE89370400440532013000', email: 'ap@acme.example' },
  ],
});

function fixed<T>(value: T): Source<T> {
  return { current: () => value, onChange: () => () => undefined };
}

async function main(): Promise<void> {
  const path = process.argv[2];
  if (path === undefined) throw new Error('usage: process.js <config.json>');
  const config = JSON.parse(readFileSync(path, 'utf8')) as ProcessConfig;
  if (config.role === 'app') {
    const server = createServer((_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(BODY),
      });
      res.end(BODY);
    });
    server.keepAliveTimeout = 120_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    process.stdout.write(
      `READY ${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`,
    );
    return;
  }
  const snapshot: PolicySnapshot = { version: 1, policies: config.policies };
  const sidecar = await startSidecar({
    module: config.module,
    namespace: 'erp',
    trustDomain: 'cluster.local',
    inbound: { host: '127.0.0.1', port: 0, appPort: config.appPort },
    outbound: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    tls: fixed({ ...config.tls, notAfter: new Date(config.tls.notAfter as unknown as string) }),
    policy: fixed(snapshot),
    resolveDestination: staticDestinationResolver(config.destinations),
    tokenizeKey: 'benchmark-tokenize-key-0123456789',
    auditLogPath: config.auditLogPath,
    registry: new Registry(),
    logger: silentLogger(),
  });
  process.on('SIGTERM', () => {
    void sidecar.close(1000).then(() => process.exit(0));
  });
  process.stdout.write(
    `READY ${JSON.stringify({ inbound: sidecar.inboundPort, outbound: sidecar.outboundPort, admin: sidecar.adminPort })}\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
