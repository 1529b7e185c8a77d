/**
 * The outbound side: an explicit HTTP proxy on localhost for the app (HTTP_PROXY). Absolute-form
 * requests (`GET http://finance.erp.svc:8080/api/...`) and origin-form requests with a Host header
 * naming a module are sent over mTLS to that module's inbound sidecar, presenting this workload's
 * certificate and accepting only a server whose SPIFFE ID the destination module may have.
 * Cleartext HTTP/2 with prior knowledge (gRPC clients pointed at this port, `:authority` naming the
 * module) is detected from the connection preface and forwarded over h2. CONNECT and hosts that
 * name no module are refused unless the egress allow-list names them.
 *
 * Connections are reused: one keep-alive agent (HTTP/1.1) and one HTTP/2 session per destination.
 * When the certificate rotates, new agents are built; the old ones finish their calls, then close.
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpsAgent } from 'node:https';
import {
  Agent as HttpAgent,
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createH2Server,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import {
  connect as netConnect,
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import { createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';

import type { AuditDecision, AuditLog, AuditRecord } from './audit-log.js';
import { GrpcStatus, SidecarCode, grpcStatusForHttp } from './codes.js';
import { forwardH2Stream, H2SessionPool, respondGrpcError } from './h2-forward.js';
import { forward, relayResponse, type ForwardError, type ForwardTarget } from './http-forward.js';
import { forwardRequestHeaders, forwardResponseHeaders, isGrpcContentType } from './headers.js';
import type { SidecarMetrics } from './metrics.js';
import { isRevoked, pemList, type PolicyState } from './policy-state.js';
import { identityOfCertificate } from './spiffe.js';
import type {
  Clock,
  DestinationResolver,
  ModuleDestination,
  SidecarLogger,
  TlsMaterial,
  TlsMaterialSource,
} from './types.js';

export interface OutboundOptions {
  module: string;
  trustDomain: string;
  host: string;
  port: number;
  /** `host` or `host:port` entries reachable without mTLS (plain HTTP forward or CONNECT tunnel). */
  egressAllowList?: readonly string[];
  /** Keep-alive connections per destination; default 64. */
  connectionsPerDestination?: number;
  connectTimeoutMs?: number;
  upstreamHeadersTimeoutMs?: number;
  upstreamBodyTimeoutMs?: number;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  idleTimeoutMs?: number;
}

export interface OutboundDeps {
  tls: TlsMaterialSource;
  policy: PolicyState;
  resolveDestination: DestinationResolver;
  audit: AuditLog;
  metrics: SidecarMetrics;
  logger: SidecarLogger;
  clock: Clock;
}

/** The destination presented a certificate its module may not have. */
export class PeerIdentityError extends Error {
  readonly code = 'ERPGUARD_PEER_IDENTITY';
}

interface Generation {
  material: TlsMaterial;
  context: SecureContext;
  agents: Map<string, HttpsAgent>;
  h2: H2SessionPool;
}

interface OutCall {
  started: number;
  requestId: string;
  method: string;
  path: string;
  protocol: AuditRecord['protocol'];
  destination: string | null;
  decision: AuditDecision;
  reason: string;
  message?: string;
  status: number;
  grpcStatus?: number;
  bytesIn: number;
  bytesOut: number;
  done: boolean;
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export class OutboundProxy {
  private readonly net: NetServer;
  private readonly h1: HttpServer;
  private readonly h2: Http2Server;
  private gen: Generation | undefined;
  private readonly egress = new HttpAgent({ keepAlive: true, maxSockets: 16, maxFreeSockets: 16 });
  private readonly egressList: ReadonlyMap<string, ReadonlySet<number> | 'any'>;
  private readonly sockets = new Set<Socket>();
  private closing = false;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly durationChild: { observe(v: number): void };

  constructor(
    private readonly opts: OutboundOptions,
    private readonly deps: OutboundDeps,
  ) {
    this.egressList = parseEgressList(opts.egressAllowList ?? []);
    this.durationChild = deps.metrics.duration.labels('outbound');
    this.h1 = createHttpServer({
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      requestTimeout: opts.requestTimeoutMs ?? 300_000,
      keepAliveTimeout: 30_000,
    });
    this.h1.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res));
    this.h1.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.onConnect(req, socket, head),
    );
    this.h1.on('clientError', (err: Error, socket: Socket) => {
      if (socket.writable)
        socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy(err);
    });
    this.h2 = createH2Server({ settings: { maxConcurrentStreams: 1000 }, maxHeaderListPairs: 128 });
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) =>
      this.onStream(stream, headers),
    );
    this.h2.on('sessionError', () => undefined);
    this.net = createNetServer((socket) => this.sniff(socket));
    this.net.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    const material = deps.tls.current();
    if (material !== undefined) this.setTlsMaterial(material);
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(this.opts.port, this.opts.host, () => {
        this.net.off('error', reject);
        resolve((this.net.address() as AddressInfo).port);
      });
    });
  }

  /** New connections use the new certificate; old pools finish their calls, then close. */
  setTlsMaterial(
    material: TlsMaterial,
    extraRoots: readonly string[] = this.deps.policy.current?.extraRoots ?? [],
  ): void {
    const context = createSecureContext({
      key: material.key,
      cert: pemList(material.certChain).join(''),
      ca: [...new Set([...pemList(material.trustBundle), ...extraRoots])],
      minVersion: 'TLSv1.2',
    });
    const old = this.gen;
    this.gen = { material, context, agents: new Map(), h2: new H2SessionPool() };
    if (old !== undefined) {
      for (const agent of old.agents.values()) retire(agent);
      old.h2.closeAll();
    }
  }

  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.net.close(() => resolve()));
    this.h1.closeIdleConnections();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
        delay(graceMs),
      ]);
    }
    for (const s of this.sockets) s.destroy();
    await Promise.race([closed, delay(1000)]);
    const gen = this.gen;
    this.gen = undefined;
    if (gen !== undefined) {
      gen.h2.destroyAll();
      for (const agent of gen.agents.values()) agent.destroy();
    }
    this.egress.destroy();
  }

  // --- connection dispatch --------------------------------------------------------------------

  /** Reads enough of the first bytes to tell an HTTP/2 preface from HTTP/1.x. */
  private sniff(socket: Socket): void {
    let seen: Buffer = Buffer.alloc(0);
    socket.setTimeout(this.opts.headersTimeoutMs ?? 10_000, () => socket.destroy());
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2Prefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2Prefix && n < H2_PREFACE.length) return;
      socket.off('data', onData);
      socket.pause();
      socket.setTimeout(0);
      if (isH2Prefix) {
        // nghttp2 reads from the socket's native handle and would miss the bytes already read:
        // hand it a stream that replays them first.
        this.h2.emit('connection', new ReplaySocket(socket, seen));
        return;
      }
      socket.unshift(seen);
      this.h1.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
  }

  // --- HTTP/1.1 -------------------------------------------------------------------------------

  private newCall(method: string, protocol: AuditRecord['protocol']): OutCall {
    this.inFlight += 1;
    return {
      started: performance.now(),
      requestId: randomUUID(),
      method,
      path: '',
      protocol,
      destination: null,
      decision: 'deny',
      reason: '',
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      done: false,
    };
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const call = this.newCall(req.method ?? '', 'http/1.1');
    res.once('close', () => {
      call.status = res.statusCode;
      this.callEnded(call);
    });
    try {
      this.handleRequest(req, res, call);
    } catch (e) {
      this.deps.logger.error('outbound handler failed', {
        error: e instanceof Error ? e : String(e),
      });
      this.refuseHttp(req, res, call, 500, SidecarCode.Internal, 'internal error');
    }
  }

  private handleRequest(req: IncomingMessage, res: ServerResponse, call: OutCall): void {
    const pre = this.precheck();
    if (pre !== undefined) return this.refuseHttp(req, res, call, 503, pre.code, pre.message);
    const target = parseProxyTarget(req.url ?? '', req.headers.host);
    if (!target.ok)
      return this.refuseHttp(req, res, call, 400, SidecarCode.BadRequest, target.message);
    call.path = auditPath(target.path);
    const dest = this.deps.resolveDestination(target.host, target.port);
    if (dest === undefined) {
      call.destination = target.host;
      if (!this.egressAllowed(target.host, target.port ?? 80)) {
        return this.refuseHttp(
          req,
          res,
          call,
          403,
          SidecarCode.DestinationNotAllowed,
          `${target.host} is not a module and not in the egress allow-list`,
        );
      }
      call.decision = 'allow';
      call.reason = SidecarCode.EgressAllowed;
      const egress: ForwardTarget = {
        agent: this.egress,
        tls: false,
        host: target.host,
        port: target.port ?? 80,
      };
      return this.send(egress, req, res, call, target.path, false);
    }
    call.destination = dest.module;
    const gen = this.usableGeneration();
    if (gen === undefined) {
      return this.refuseHttp(
        req,
        res,
        call,
        503,
        SidecarCode.NoWorkloadCertificate,
        'this workload has no valid certificate yet',
      );
    }
    call.decision = 'allow';
    call.reason = SidecarCode.Forwarded;
    const key = destinationKey(dest);
    let agent = gen.agents.get(key);
    if (agent === undefined) {
      const max = this.opts.connectionsPerDestination ?? 64;
      agent = new HttpsAgent({
        keepAlive: true,
        maxSockets: max,
        maxFreeSockets: max,
        scheduling: 'lifo',
        // No TLS session resumption: Node skips checkServerIdentity on a resumed session, and
        // every new connection must prove the destination's identity (and that it is not revoked).
        maxCachedSessions: 0,
        ...this.tlsConnectOptions(gen, dest, ['http/1.1']),
      });
      gen.agents.set(key, agent);
    }
    const upstream: ForwardTarget = {
      agent,
      tls: true,
      host: dest.address.host,
      port: dest.address.port,
    };
    this.send(upstream, req, res, call, target.path, true);
  }

  private send(
    target: ForwardTarget,
    req: IncomingMessage,
    res: ServerResponse,
    call: OutCall,
    path: string,
    module: boolean,
  ): void {
    const len = req.headers['content-length'];
    const hasBody =
      len !== undefined ? len !== '0' : req.headers['transfer-encoding'] !== undefined;
    if (len !== undefined) call.bytesIn = Number(len) || 0;
    const abort = forward(
      target,
      {
        method: call.method,
        path,
        headers: forwardRequestHeaders(req.headers, {}),
        body: hasBody ? req : null,
        onBodyBytes: (n) => (call.bytesIn = n),
        headersTimeoutMs: this.opts.upstreamHeadersTimeoutMs ?? 30_000,
        bodyTimeoutMs: this.opts.upstreamBodyTimeoutMs ?? 300_000,
      },
      (upstream) => {
        if (res.destroyed) {
          upstream.destroy();
          return;
        }
        call.status = upstream.statusCode ?? 502;
        relayResponse(
          upstream,
          res,
          call.status,
          forwardResponseHeaders(upstream.headers),
          (n) => (call.bytesOut = n),
        );
      },
      (err) => this.upstreamFailed(req, res, call, err, module),
    );
    res.once('close', () => {
      if (!res.writableFinished) abort();
    });
  }

  private upstreamFailed(
    req: IncomingMessage,
    res: ServerResponse,
    call: OutCall,
    err: ForwardError,
    module: boolean,
  ): void {
    if (res.destroyed) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const cause = findPeerIdentityError(err);
    if (cause !== undefined) {
      this.deps.logger.error('destination presented an unexpected identity', {
        requestId: call.requestId,
        destination: call.destination,
        error: cause.message,
      });
      return this.refuseHttp(
        req,
        res,
        call,
        502,
        SidecarCode.UpstreamIdentityMismatch,
        cause.message,
        call.decision,
      );
    }
    this.deps.logger.warn(
      module ? 'destination sidecar unavailable' : 'egress destination unavailable',
      {
        requestId: call.requestId,
        destination: call.destination,
        error: err.message,
      },
    );
    if (err.code === 'Timeout') {
      return this.refuseHttp(
        req,
        res,
        call,
        504,
        SidecarCode.UpstreamTimeout,
        'the destination did not answer in time',
        call.decision,
      );
    }
    this.refuseHttp(
      req,
      res,
      call,
      503,
      SidecarCode.UpstreamUnavailable,
      'the destination is unavailable',
      call.decision,
    );
  }

  private refuseHttp(
    req: IncomingMessage,
    res: ServerResponse,
    call: OutCall,
    status: number,
    code: string,
    message: string,
    decision: AuditDecision = 'deny',
  ): void {
    call.decision = decision;
    call.reason = code;
    call.message = message;
    if (decision === 'deny') this.deps.metrics.denied.inc({ direction: 'outbound', reason: code });
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ code, reason: message, policy: null });
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
    });
    res.end(body);
    if (!req.readableEnded) req.resume();
  }

  // --- CONNECT --------------------------------------------------------------------------------

  private onConnect(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const call = this.newCall('CONNECT', 'http/1.1');
    call.path = (req.url ?? '').slice(0, 256);
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/]+):(\d{1,5})$/.exec(req.url ?? '');
    const host = m?.[1]?.replace(/^\[|\]$/g, '').toLowerCase();
    const port = Number(m?.[2]);
    const end = (status: number, code: string, message: string): void => {
      call.status = status;
      call.reason = code;
      call.message = message;
      this.deps.metrics.denied.inc({ direction: 'outbound', reason: code });
      const body = JSON.stringify({ code, reason: message, policy: null });
      socket.end(
        `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : status === 503 ? 'Service Unavailable' : 'Forbidden'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      this.callEnded(call);
    };
    const pre = this.precheck();
    if (pre !== undefined) return end(503, pre.code, pre.message);
    if (host === undefined || !(port > 0 && port < 65536))
      return end(400, SidecarCode.BadRequest, 'CONNECT target must be host:port');
    call.destination = host;
    if (!this.egressAllowed(host, port)) {
      const isModule = this.deps.resolveDestination(host, port) !== undefined;
      return end(
        403,
        SidecarCode.ConnectNotAllowed,
        isModule
          ? `CONNECT to module ${host} is not supported: send plain http:// requests through this proxy, it adds mTLS`
          : `CONNECT to ${host}:${port} is not in the egress allow-list`,
      );
    }
    call.decision = 'allow';
    call.reason = SidecarCode.EgressAllowed;
    const upstream = netConnect({ host, port });
    upstream.setTimeout(this.opts.connectTimeoutMs ?? 5_000, () =>
      upstream.destroy(new Error('connect timeout')),
    );
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      call.status = 200;
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('data', (c: Buffer) => (call.bytesOut += c.length));
    socket.on('data', (c: Buffer) => (call.bytesIn += c.length));
    upstream.once('error', () => {
      if (call.status === 0) {
        call.decision = 'allow';
        return end(503, SidecarCode.UpstreamUnavailable, 'the egress destination is unavailable');
      }
      socket.destroy();
    });
    socket.once('error', () => upstream.destroy());
    socket.once('close', () => {
      upstream.destroy();
      this.callEnded(call);
    });
  }

  // --- HTTP/2 (gRPC) --------------------------------------------------------------------------

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const grpc = isGrpcContentType(headers['content-type']);
    const call = this.newCall(String(headers[':method'] ?? ''), grpc ? 'grpc' : 'h2');
    call.path = auditPath(String(headers[':path'] ?? ''));
    let ended = false;
    const endCall = (): void => {
      if (ended) return;
      ended = true;
      this.callEnded(call);
    };
    const refuse = (
      status: number,
      code: string,
      message: string,
      decision: AuditDecision = 'deny',
    ): void => {
      call.decision = decision;
      call.reason = code;
      call.message = message;
      if (decision === 'deny')
        this.deps.metrics.denied.inc({ direction: 'outbound', reason: code });
      if (grpc) {
        call.status = 200;
        call.grpcStatus = grpcStatusForHttp(status);
        respondGrpcError(stream, call.grpcStatus, `${code}: ${message}`);
      } else if (!stream.headersSent && !stream.destroyed) {
        call.status = status;
        const body = JSON.stringify({ code, reason: message, policy: null });
        stream.respond({
          ':status': status,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        });
        stream.end(body);
        stream.resume();
      }
      endCall();
    };
    const pre = this.precheck();
    if (pre !== undefined) return refuse(503, pre.code, pre.message);
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    const parsed = parseAuthority(authority);
    if (parsed === undefined)
      return refuse(400, SidecarCode.BadRequest, ':authority must name the destination');
    const dest = this.deps.resolveDestination(parsed.host, parsed.port);
    call.destination = dest?.module ?? parsed.host;
    if (dest === undefined) {
      return refuse(
        403,
        SidecarCode.DestinationNotAllowed,
        `${parsed.host} is not a module (HTTP/2 egress is not proxied)`,
      );
    }
    const gen = this.usableGeneration();
    if (gen === undefined)
      return refuse(
        503,
        SidecarCode.NoWorkloadCertificate,
        'this workload has no valid certificate yet',
      );
    call.decision = 'allow';
    call.reason = SidecarCode.Forwarded;
    const out: OutgoingHttpHeaders = forwardRequestHeaders(headers, {}, true);
    delete out['host'];
    out[':method'] = headers[':method'];
    out[':path'] = headers[':path'];
    out[':scheme'] = 'https';
    out[':authority'] = authority;
    const session = gen.h2.get(
      destinationKey(dest),
      `https://${formatHost(dest.address.host)}:${dest.address.port}`,
      this.tlsConnectOptions(gen, dest, ['h2']),
    );
    forwardH2Stream(
      stream,
      session,
      out,
      stream.endAfterHeaders,
      (r) => {
        call.status = r.status;
        call.bytesIn = r.bytesIn;
        call.bytesOut = r.bytesOut;
        if (r.grpcStatus !== undefined) call.grpcStatus = r.grpcStatus;
        else if (r.reset === true && grpc) call.grpcStatus = GrpcStatus.CANCELLED;
        endCall();
      },
      (err) => {
        const cause = findPeerIdentityError(err);
        if (cause !== undefined)
          return refuse(502, SidecarCode.UpstreamIdentityMismatch, cause.message, 'allow');
        this.deps.logger.warn('destination sidecar unavailable (h2)', {
          requestId: call.requestId,
          destination: call.destination,
          error: err.message,
        });
        refuse(503, SidecarCode.UpstreamUnavailable, 'the destination is unavailable', 'allow');
      },
    );
  }

  // --- shared ---------------------------------------------------------------------------------

  private precheck(): { code: string; message: string } | undefined {
    if (this.closing)
      return { code: SidecarCode.ShuttingDown, message: 'sidecar is shutting down' };
    if (!this.deps.audit.accepting()) {
      this.deps.metrics.auditDropped.inc();
      return { code: SidecarCode.AuditUnavailable, message: 'audit log unavailable' };
    }
    return undefined;
  }

  private usableGeneration(): Generation | undefined {
    const gen = this.gen;
    if (gen === undefined) return undefined;
    const notAfter =
      gen.material.notAfter instanceof Date
        ? gen.material.notAfter.getTime()
        : gen.material.notAfter;
    return this.deps.clock() < notAfter ? gen : undefined;
  }

  private tlsConnectOptions(
    gen: Generation,
    dest: ModuleDestination,
    alpn: string[],
  ): {
    secureContext: SecureContext;
    rejectUnauthorized: true;
    servername?: string;
    ALPNProtocols: string[];
    checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
  } {
    const opts: ReturnType<OutboundProxy['tlsConnectOptions']> = {
      secureContext: gen.context,
      rejectUnauthorized: true,
      ALPNProtocols: alpn,
      checkServerIdentity: (_host, cert) => this.checkServer(dest, cert),
    };
    if (dest.serverName !== undefined) opts.servername = dest.serverName;
    return opts;
  }

  /** The server must present one SPIFFE ID of our trust domain that the destination may have. */
  private checkServer(dest: ModuleDestination, cert: PeerCertificate): Error | undefined {
    const check = identityOfCertificate(
      { subjectAltName: cert.subjectaltname, validFrom: cert.valid_from, validTo: cert.valid_to },
      this.opts.trustDomain,
      this.deps.clock(),
    );
    if (!check.ok) return new PeerIdentityError(`destination ${dest.module}: ${check.message}`);
    const id = check.identity.spiffeId;
    if (!dest.identities.includes(id)) {
      return new PeerIdentityError(
        `destination ${dest.module} presented ${id}, which is not one of its identities`,
      );
    }
    const active = this.deps.policy.current;
    if (
      active !== undefined &&
      isRevoked(active, id, check.identity.notBefore, this.deps.clock())
    ) {
      return new PeerIdentityError(`destination ${dest.module} presented a revoked identity ${id}`);
    }
    return undefined;
  }

  private egressAllowed(host: string, port: number): boolean {
    const entry = this.egressList.get(host.toLowerCase());
    return entry !== undefined && (entry === 'any' || entry.has(port));
  }

  private callEnded(call: OutCall): void {
    if (call.done) return;
    call.done = true;
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.drainWaiters.length > 0)
      for (const w of this.drainWaiters.splice(0)) w();
    const seconds = (performance.now() - call.started) / 1000;
    const { metrics, audit } = this.deps;
    this.durationChild.observe(seconds);
    const dest =
      call.reason === SidecarCode.Forwarded || call.reason === SidecarCode.UpstreamUnavailable
        ? (call.destination ?? 'unknown')
        : 'other';
    metrics.countRequest('outbound', call.decision, this.opts.module, dest);
    if (call.reason === SidecarCode.AuditUnavailable) return;
    const material = this.gen?.material;
    const record: AuditRecord = {
      requestId: call.requestId,
      direction: 'outbound',
      caller: material?.spiffeId ?? null,
      callerModule: this.opts.module,
      destination: call.destination,
      method: call.method,
      path: call.path,
      protocol: call.protocol,
      decision: call.decision,
      reason: call.reason,
      policy: null,
      rule: null,
      status: call.status,
      durationMs: Math.round(seconds * 1e6) / 1e3,
      bytesIn: call.bytesIn,
      bytesOut: call.bytesOut,
      masked: 0,
      tokenized: 0,
      snapshotVersion: this.deps.policy.current?.version ?? null,
    };
    if (call.grpcStatus !== undefined) record.grpcStatus = call.grpcStatus;
    if (call.decision !== 'allow' && call.message !== undefined)
      record.message = call.message.slice(0, 300);
    if (!audit.append(record)) metrics.auditDropped.inc();
  }
}

/** A socket whose first bytes were already read, replayed ahead of the rest. */
class ReplaySocket extends Duplex {
  constructor(
    private readonly socket: Socket,
    first: Buffer,
  ) {
    super();
    this.push(first);
    socket.on('data', (c: Buffer) => {
      if (!this.push(c)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }
}

/** Stops reusing an agent's connections: calls in flight finish, then their sockets close. */
function retire(agent: HttpsAgent): void {
  (agent as HttpsAgent & { keepAlive: boolean }).keepAlive = false;
  for (const list of Object.values(agent.freeSockets))
    for (const socket of list ?? []) socket.destroy();
}

// --- parsing ----------------------------------------------------------------------------------

export type ProxyTarget =
  | { ok: true; host: string; port: number | undefined; path: string }
  | { ok: false; message: string };

/**
 * Absolute-form `http://host[:port]/path?query` or origin-form `/path` + Host. The path is kept
 * exactly as sent (never normalised here: the destination's sidecar judges the raw bytes).
 */
export function parseProxyTarget(url: string, hostHeader: string | undefined): ProxyTarget {
  let authority: string;
  let path: string;
  if (url.startsWith('/')) {
    if (hostHeader === undefined || hostHeader === '')
      return { ok: false, message: 'origin-form request without a Host header' };
    authority = hostHeader;
    path = url;
  } else if (/^http:\/\//i.test(url)) {
    const rest = url.slice(7);
    const end = rest.search(/[/?#]/);
    authority = end < 0 ? rest : rest.slice(0, end);
    path = end < 0 ? '/' : rest.slice(end);
    if (path.startsWith('?')) path = `/${path}`;
    if (path.startsWith('#')) path = '/';
  } else if (/^https:\/\//i.test(url)) {
    return { ok: false, message: 'send http:// URLs to the proxy; it adds mTLS itself' };
  } else {
    return {
      ok: false,
      message:
        'request target must be absolute-form (http://host/path) or origin-form with a Host header',
    };
  }
  const parsed = parseAuthority(authority);
  if (parsed === undefined)
    return { ok: false, message: `invalid host ${JSON.stringify(authority.slice(0, 100))}` };
  return { ok: true, ...parsed, path };
}

/** `host`, `host:port`, `[v6]:port`; no userinfo. Host lower-cased, trailing dot removed. */
export function parseAuthority(
  authority: string,
): { host: string; port: number | undefined } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(authority);
  if (m === null || m[1] === undefined) return undefined;
  const host = m[1]
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/\.$/, '');
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (host === '' || (port !== undefined && !(port > 0 && port < 65536))) return undefined;
  return { host, port };
}

function parseEgressList(list: readonly string[]): Map<string, Set<number> | 'any'> {
  const out = new Map<string, Set<number> | 'any'>();
  for (const entry of list) {
    const parsed = parseAuthority(entry.trim());
    if (parsed === undefined)
      throw new Error(`egress allow-list entry ${JSON.stringify(entry)} is not host or host:port`);
    const existing = out.get(parsed.host);
    if (parsed.port === undefined || existing === 'any') out.set(parsed.host, 'any');
    else if (existing === undefined) out.set(parsed.host, new Set([parsed.port]));
    else existing.add(parsed.port);
  }
  return out;
}

function destinationKey(dest: ModuleDestination): string {
  return `${dest.module}|${dest.address.host}|${dest.address.port}|${dest.serverName ?? ''}|${dest.identities.join(',')}`;
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function auditPath(path: string): string {
  const q = path.search(/[?#]/);
  const p = q < 0 ? path : path.slice(0, q);
  return p.length > 256 ? `${p.slice(0, 256)}…` : p;
}

function findPeerIdentityError(err: unknown): PeerIdentityError | undefined {
  for (let e: unknown = err, i = 0; e instanceof Error && i < 5; e = e.cause, i++) {
    if (e instanceof PeerIdentityError) return e;
  }
  return undefined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
