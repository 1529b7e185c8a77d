/**
 * HTTP/1.1 forwarding over Node's keep-alive agents (http to the app, https with mTLS to another
 * sidecar). Node's own client is used rather than undici: it parses with the native llhttp and
 * costs no extra memory, where loading undici adds ~20 MB of RSS to every sidecar.
 *
 * A request without a body that fails on a reused keep-alive connection before any response
 * (the server closed the idle connection as we sent on it) is retried once on a fresh connection.
 */
import {
  request as httpRequest,
  type Agent,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';

export interface ForwardTarget {
  agent: Agent | HttpsAgent;
  tls: boolean;
  host: string;
  port: number;
}

export interface ForwardRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  /** Request body to stream (null: none). */
  body: Readable | null;
  /** Fail with ERPGUARD_REQUEST_TOO_LARGE past this many body bytes (bodies without Content-Length). */
  bodyLimit?: number;
  onBodyBytes?: (n: number) => void;
  /** Waiting for the response headers, ms. */
  headersTimeoutMs: number;
  /** Longest silence while the response body streams, ms. */
  bodyTimeoutMs: number;
}

export class ForwardError extends Error {
  constructor(
    readonly code: 'Timeout' | 'Unavailable' | 'TooLarge',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Sends `req` to `target`; exactly one of `onResponse` / `onError` is called. Returns an abort function. */
export function forward(
  target: ForwardTarget,
  req: ForwardRequest,
  onResponse: (res: IncomingMessage) => void,
  onError: (err: ForwardError) => void,
): () => void {
  let current: ClientRequest | undefined;
  let settled = false;
  let aborted = false;
  const fail = (err: ForwardError): void => {
    if (settled) return;
    settled = true;
    onError(err);
  };
  const send = (attempt: number): void => {
    const make = target.tls ? httpsRequest : httpRequest;
    const out = make({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.path,
      headers: req.headers,
      agent: target.agent,
      setHost: false,
    });
    current = out;
    let responded = false;
    out.setTimeout(req.headersTimeoutMs, () => {
      out.destroy(
        new ForwardError(
          'Timeout',
          responded ? 'response body stalled' : 'no response headers in time',
        ),
      );
    });
    out.once('response', (res: IncomingMessage) => {
      responded = true;
      out.setTimeout(req.bodyTimeoutMs);
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      onResponse(res);
    });
    out.once('error', (e: Error) => {
      if (responded || aborted) return;
      if (attempt === 0 && out.reusedSocket && req.body === null && isConnectionReset(e)) {
        send(1);
        return;
      }
      if (e instanceof ForwardError) fail(e);
      else fail(new ForwardError('Unavailable', e.message, { cause: e }));
    });
    if (req.body === null) {
      out.end();
      return;
    }
    let n = 0;
    const limit = req.bodyLimit;
    req.body.on('data', (chunk: Buffer) => {
      n += chunk.length;
      req.onBodyBytes?.(n);
      if (limit !== undefined && n > limit) {
        req.body?.unpipe(out);
        out.destroy();
        fail(new ForwardError('TooLarge', `request body exceeds ${limit} bytes`));
      }
    });
    req.body.pipe(out);
  };
  send(0);
  return () => {
    aborted = true;
    current?.destroy();
  };
}

function isConnectionReset(e: Error): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED';
}

/** Bodies up to this size (by Content-Length) are relayed in one write with the headers. */
export const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Sends `upstream`'s response on `res`. A small body with a Content-Length is collected and written
 * together with the headers (one TLS record and one syscall instead of several); anything else is
 * piped with backpressure. `count` receives the body bytes relayed.
 */
export function relayResponse(
  upstream: IncomingMessage,
  res: ServerResponse | Http2ServerResponse,
  status: number,
  headers: OutgoingHttpHeaders,
  count: (bytes: number) => void,
): void {
  upstream.once('aborted', () => res.destroy());
  upstream.once('error', () => res.destroy());
  const len = Number(upstream.headers['content-length']);
  if (len >= 0 && len <= SMALL_BODY_BYTES) {
    const chunks: Buffer[] = [];
    let total = 0;
    upstream.on('data', (c: Buffer) => {
      chunks.push(c);
      total += c.length;
    });
    upstream.once('end', () => {
      if (res.destroyed) return;
      count(total);
      res.writeHead(status, headers as Record<string, string>);
      res.end(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
    });
    return;
  }
  res.writeHead(status, headers as Record<string, string>);
  let total = 0;
  upstream.on('data', (c: Buffer) => count((total += c.length)));
  upstream.pipe(res as ServerResponse);
}
