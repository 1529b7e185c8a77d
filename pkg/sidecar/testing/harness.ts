/**
 * Helpers for the sidecar's integration tests and benchmark: settable sources, an mTLS raw-socket
 * client (to send exact request bytes), and small apps. Not used by the sidecar itself.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

import type { Source, TlsMaterial } from '../types.js';
import type { TestCa, TestLeaf } from './pki.js';

/** A Source whose value the test sets. */
export class ValueSource<T> implements Source<T> {
  private listeners = new Set<(v: T) => void>();
  constructor(private value?: T) {}
  current(): T | undefined {
    return this.value;
  }
  onChange(listener: (v: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(value: T): void {
    this.value = value;
    for (const l of this.listeners) l(value);
  }
}

export function tlsMaterialOf(leaf: TestLeaf, ...roots: TestCa[]): TlsMaterial {
  return {
    key: leaf.keyPem,
    certChain: leaf.chain,
    trustBundle: roots.map((r) => r.certPem),
    notAfter: leaf.notAfter,
    spiffeId: leaf.spiffeIds[0] ?? '',
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Opens an mTLS connection and sends `request` verbatim (HTTP/1.1), returning the parsed response.
 * Rejects when the handshake or the connection fails.
 */
export function rawTlsRequest(
  port: number,
  creds: { key?: string; cert?: string; ca: string },
  request: string,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: creds.ca,
      ...(creds.key === undefined ? {} : { key: creds.key }),
      ...(creds.cert === undefined ? {} : { cert: creds.cert }),
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    const chunks: Buffer[] = [];
    socket.on('secureConnect', () => socket.write(request));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const parsed = parseResponse(Buffer.concat(chunks).toString('utf8'));
      if (parsed !== undefined) {
        socket.destroy();
        resolve(parsed);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const parsed = parseResponse(Buffer.concat(chunks).toString('utf8'));
      if (parsed !== undefined) resolve(parsed);
      else
        reject(
          new Error(`connection closed without a complete response (${chunks.length} chunks)`),
        );
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
  });
}

function parseResponse(text: string): RawResponse | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(statusLine?.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const body = text.slice(end + 4);
  const len = headers['content-length'];
  if (len !== undefined && Buffer.byteLength(body) < Number(len)) return undefined;
  if (
    len === undefined &&
    headers['transfer-encoding'] === 'chunked' &&
    !body.endsWith('0\r\n\r\n')
  )
    return undefined;
  return { status, headers, body };
}

export type Route = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** A small HTTP app on 127.0.0.1: `routes` by path (query ignored), 404 otherwise. */
export async function startApp(
  routes: Record<string, Route>,
): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const route = routes[path] ?? routes['*'];
      if (route === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      route(req, res, Buffer.concat(chunks));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function json(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}
