/**
 * HTTP/2 stream forwarding (gRPC unary and streaming, and any h2 request the outbound proxy
 * passes on): one client session per upstream, multiplexed; a stream is piped both ways with
 * headers, data and trailers, and a reset on either side resets the other.
 */
import {
  connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type SecureClientSessionOptions,
  type ServerHttp2Stream,
} from 'node:http2';

import { forwardResponseHeaders } from './headers.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } =
  constants;

/** One live session per key, created on demand and forgotten when it closes or goes away. */
export class H2SessionPool {
  private readonly sessions = new Map<string, ClientHttp2Session>();

  get(
    key: string,
    authority: string,
    options: SecureClientSessionOptions | undefined,
  ): ClientHttp2Session {
    let s = this.sessions.get(key);
    if (s !== undefined && !s.closed && !s.destroyed) return s;
    s = connect(authority, { ...options, peerMaxConcurrentStreams: 1000 });
    const session = s;
    const forget = (): void => {
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    };
    session.on('error', forget);
    session.on('goaway', forget);
    session.on('close', forget);
    this.sessions.set(key, session);
    return session;
  }

  /** Stops using every session; open streams finish (graceful GOAWAY). */
  closeAll(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  destroyAll(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }
}

export interface H2ForwardResult {
  /** `:status` sent downstream. */
  status: number;
  /** grpc-status sent (trailers or trailers-only), when there was one. */
  grpcStatus: number | undefined;
  bytesIn: number;
  bytesOut: number;
  /** Upstream failure before any response (the caller answers with its own error). */
  error?: Error;
  /** The stream was reset or cancelled midway. */
  reset?: boolean;
}

/**
 * Pipes `down` (a server stream whose headers arrived) to a new stream on `session`.
 * `onUpstreamError` is called, instead of `done`, when the upstream fails before sending
 * headers, so the caller can answer (503 / gRPC UNAVAILABLE) itself.
 */
export function forwardH2Stream(
  down: ServerHttp2Stream,
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  endStream: boolean,
  done: (r: H2ForwardResult) => void,
  onUpstreamError: (e: Error, r: H2ForwardResult) => void,
): void {
  const r: H2ForwardResult = { status: 0, grpcStatus: undefined, bytesIn: 0, bytesOut: 0 };
  let up: ClientHttp2Stream;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    done(r);
  };
  try {
    up = session.request(headers, { endStream });
  } catch (e) {
    finished = true;
    onUpstreamError(e instanceof Error ? e : new Error(String(e)), r);
    return;
  }
  let trailers: IncomingHttpHeaders | undefined;
  if (!endStream) {
    down.on('data', (chunk: Buffer) => (r.bytesIn += chunk.length));
    down.pipe(up);
  }
  up.on('response', (h, flags) => {
    const status = Number(h[':status'] ?? 502);
    if (status >= 100 && status < 200) return;
    r.status = status;
    const out = forwardResponseHeaders(h);
    out[':status'] = status;
    if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      r.grpcStatus = grpcStatusOf(h);
      if (!down.destroyed && !down.closed) down.respond(out, { endStream: true });
      return;
    }
    if (down.destroyed || down.closed) return;
    down.respond(out, { waitForTrailers: true });
    up.on('data', (chunk: Buffer) => (r.bytesOut += chunk.length));
    up.pipe(down);
  });
  up.on('trailers', (t: IncomingHttpHeaders) => {
    trailers = t;
  });
  // The HTTP/1-compatibility response object (inbound) also answers 'wantTrailers' with its own
  // (empty) trailers; this stream's trailers are the upstream's.
  down.removeAllListeners('wantTrailers');
  down.on('wantTrailers', () => {
    const t = forwardResponseHeaders(trailers ?? {});
    r.grpcStatus = grpcStatusOf(trailers ?? {});
    try {
      down.sendTrailers(t);
    } catch {
      down.close(NGHTTP2_INTERNAL_ERROR);
    }
  });
  up.on('error', (e: Error) => {
    if (r.status === 0 && !down.headersSent) {
      finished = true;
      onUpstreamError(e, r);
      return;
    }
    r.reset = true;
    if (!down.closed) down.close(NGHTTP2_INTERNAL_ERROR);
  });
  up.on('close', () => {
    if (!finished && r.status === 0 && !down.headersSent) {
      // Closed without a response or an error event (RST_STREAM from upstream).
      finished = true;
      onUpstreamError(new Error(`upstream stream closed (code ${up.rstCode ?? 'none'})`), r);
      return;
    }
    if (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR && !down.closed) {
      r.reset = true;
      down.close(up.rstCode);
    }
  });
  down.on('close', () => {
    if (!up.closed) {
      r.reset = true;
      up.close(NGHTTP2_CANCEL);
    }
    finish();
  });
  down.on('error', () => {
    r.reset = true;
  });
}

function grpcStatusOf(h: IncomingHttpHeaders): number | undefined {
  const v = h['grpc-status'];
  const n = typeof v === 'string' ? Number(v) : NaN;
  return Number.isInteger(n) ? n : undefined;
}

/** A gRPC trailers-only response (a single HEADERS frame with END_STREAM). */
export function respondGrpcError(
  stream: ServerHttp2Stream,
  grpcStatus: number,
  message: string,
  extra?: OutgoingHttpHeaders,
): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(grpcStatus),
      'grpc-message': encodeGrpcMessage(message),
      ...extra,
    },
    { endStream: true },
  );
  // The request body (if any) is not wanted any more.
  stream.resume();
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec): everything outside 0x20-0x7E and `%`. */
export function encodeGrpcMessage(message: string): string {
  const bytes = Buffer.from(message.slice(0, 512), 'utf8');
  let out = '';
  for (const b of bytes) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
