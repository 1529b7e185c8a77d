/**
 * The inbound side: terminates mTLS (HTTP/1.1 and HTTP/2 through ALPN), authorizes every call with
 * the decision engine, rate-limits, forwards to the app on localhost and protects the response.
 *
 * Identity is read once per TLS connection (at `secureConnection`, cached on the socket); what can
 * change during a connection's life is re-checked per request at the cost of a comparison or a map
 * look-up: the certificate's validity window against the clock, revocation against the snapshot in
 * force, and the caller's module (re-resolved when the snapshot changes).
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';

import type { DataProtection } from '../api/v1alpha1/index.js';
import { HEADER_CALLER, HEADER_CALLER_MODULE, HEADER_POLICY } from '../api/v1alpha1/index.js';
import { decide } from '../policy/decide.js';
import { DecisionReason, type Decision } from '../policy/decision-types.js';
import type { AuditDecision, AuditLog, AuditRecord } from './audit-log.js';
import { GrpcStatus, SidecarCode, grpcStatusForHttp } from './codes.js';
import { DataProtector, DecodeError, decodeBody, isJsonContentType } from './data-protection.js';
import { forwardH2Stream, H2SessionPool, respondGrpcError } from './h2-forward.js';
import { forward, ForwardError, relayResponse, type ForwardTarget } from './http-forward.js';
import {
  BODY_DESCRIBING_HEADERS,
  forwardRequestHeaders,
  forwardResponseHeaders,
  isGrpcContentType,
} from './headers.js';
import type { SidecarMetrics } from './metrics.js';
import { isRevoked, pemList, type ActiveSnapshot, type PolicyState } from './policy-state.js';
import type { RateLimiter } from './rate-limiter.js';
import { checkValidity, identityOfCertificate } from './spiffe.js';
import type { Clock, IdentityResolver, PeerIdentity, SidecarLogger, TlsMaterial } from './types.js';

export const HEADER_REQUEST_ID = 'x-erpguard-request-id';

export interface InboundOptions {
  module: string;
  trustDomain: string;
  host: string;
  port: number;
  appHost?: string;
  appPort: number;
  /** Port of the app's gRPC (cleartext HTTP/2) server, when it is not `appPort`. */
  appGrpcPort?: number;
  /** Largest response body (compressed and decoded) that is buffered for masking; default 1 MiB. */
  maskBodyLimit?: number;
  /** Largest request body forwarded; default 10 MiB. */
  maxRequestBodyBytes?: number;
  /** App response headers timeout, ms; default 30 s. */
  upstreamHeadersTimeoutMs?: number;
  /** Longest silence between app response chunks, ms; default 300 s. */
  upstreamBodyTimeoutMs?: number;
  /** Client must send all request headers within this, ms; default 10 s (slowloris). */
  headersTimeoutMs?: number;
  /** Whole-request receive limit for HTTP/1.1, ms; default 300 s. */
  requestTimeoutMs?: number;
  /** Idle connections are closed after this, ms; default 120 s. */
  idleTimeoutMs?: number;
  /** TLS handshake must finish within this, ms; default 10 s. */
  handshakeTimeoutMs?: number;
  /** Keep-alive connections to the app; default 128. */
  appConnections?: number;
  /**
   * gRPC responses are protobuf and are never JSON-masked. `passthrough` (default) forwards gRPC
   * calls whose policy has data protection unmasked; `refuse` answers them FAILED_PRECONDITION.
   */
  grpcDataProtection?: 'passthrough' | 'refuse';
}

export interface InboundDeps {
  policy: PolicyState;
  rateLimiter: RateLimiter;
  protector: DataProtector;
  audit: AuditLog;
  metrics: SidecarMetrics;
  logger: SidecarLogger;
  clock: Clock;
  identityResolver: IdentityResolver;
}

interface ConnState {
  /** HTTP/1.1: when the first byte of a request whose headers are not complete arrived (0: none). */
  headerStart: number;
  /** HTTP/1.1: requests received and not yet answered. */
  open: number;
  identity: PeerIdentity | undefined;
  failure: { code: string; message: string; spiffeId?: string } | undefined;
  resolvedFor: ActiveSnapshot | undefined;
  module: string | undefined;
  namespace: string | undefined;
}

const CONN = Symbol('erpguard.inbound.conn');
type StatefulSocket = TLSSocket & { [CONN]?: ConnState };

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** Per-call facts collected for the audit record and metrics. */
interface Call {
  started: number;
  requestId: string;
  method: string;
  path: string;
  protocol: AuditRecord['protocol'];
  caller: string | null;
  callerModule: string | null;
  callerNamespace: string | null;
  decision: AuditDecision;
  reason: string;
  wouldBe?: string;
  policy: string | null;
  rule: number | null;
  snapshotVersion: number | null;
  message?: string;
  bytesIn: number;
  bytesOut: number;
  masked: number;
  tokenized: number;
  grpcStatus?: number;
  /** gRPC: the forwarder ends the call (after trailers), not the response's close event. */
  deferEnd: boolean;
  done: boolean;
}

const JSON_HEADERS = { 'content-type': 'application/json' } as const;
/** Header fields per request (HTTP/2 enforces the same bound through maxHeaderListPairs). */
const MAX_HEADER_FIELDS = 128;

export class InboundServer {
  readonly server: Http2SecureServer;
  private readonly appAgent: HttpAgent;
  private readonly appTarget: ForwardTarget;
  private readonly h2Pool = new H2SessionPool();
  private readonly appGrpcOrigin: string;
  readonly maskLimit: number;
  private readonly maxBody: number;
  private readonly durationChild: { observe(v: number): void };
  private closing = false;
  private readonly h1Conns = new Set<StatefulSocket>();
  private readonly sweeper: NodeJS.Timeout;
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly opts: InboundOptions,
    private readonly deps: InboundDeps,
  ) {
    const appHost = opts.appHost ?? '127.0.0.1';
    const host = appHost.includes(':') ? `[${appHost}]` : appHost;
    this.appGrpcOrigin = `http://${host}:${opts.appGrpcPort ?? opts.appPort}`;
    this.maskLimit = opts.maskBodyLimit ?? 1024 * 1024;
    this.maxBody = opts.maxRequestBodyBytes ?? 10 * 1024 * 1024;
    this.durationChild = deps.metrics.duration.labels('inbound');
    const connections = opts.appConnections ?? 128;
    this.appAgent = new HttpAgent({
      keepAlive: true,
      maxSockets: connections,
      maxFreeSockets: connections,
      scheduling: 'lifo',
    });
    this.appTarget = { agent: this.appAgent, tls: false, host: appHost, port: opts.appPort };
    this.server = createSecureServer({
      allowHTTP1: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      settings: { maxConcurrentStreams: 256, maxHeaderListSize: 64 * 1024 },
      maxHeaderListPairs: MAX_HEADER_FIELDS + 4,
    });
    const s = this.server as Http2SecureServer & {
      headersTimeout?: number;
      requestTimeout?: number;
    };
    // HTTP/1.1 connections through allowHTTP1 honour these like http.Server does.
    s.headersTimeout = opts.headersTimeoutMs ?? 10_000;
    s.requestTimeout = opts.requestTimeoutMs ?? 300_000;

    this.server.setTimeout(opts.idleTimeoutMs ?? 120_000);
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, opts.headersTimeoutMs ?? 10_000));
    this.sweeper.unref();
    this.server.prependListener('secureConnection', (socket: TLSSocket) =>
      this.onConnection(socket),
    );
    this.server.on('secureConnection', (socket: TLSSocket) => this.trackHeaders(socket));
    this.server.on('tlsClientError', (err: Error & { code?: string }) => {
      this.deps.metrics.tlsFailures.inc({ reason: tlsFailureReason(err) });
      this.deps.logger.debug?.('inbound TLS handshake refused', {
        error: err.message,
        code: err.code,
      });
    });
    this.server.on('request', (req: AnyRequest, res: AnyResponse) => this.onRequest(req, res));
    this.server.on('sessionError', (err: Error) => {
      this.deps.logger.debug?.('inbound HTTP/2 session error', { error: err.message });
    });
  }

  /** Installs TLS material (and the snapshot's extra roots) for new connections. */
  setTlsMaterial(material: TlsMaterial, extraRoots: readonly string[]): void {
    this.server.setSecureContext({
      key: material.key,
      cert: pemList(material.certChain).join(''),
      ca: dedupe([...pemList(material.trustBundle), ...extraRoots]),
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting, lets in-flight calls finish (up to `graceMs`), then closes everything. */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const s = this.server as Http2SecureServer & { closeIdleConnections?: () => void };
    s.closeIdleConnections?.();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
        delay(graceMs),
      ]);
    }
    const all = this.server as Http2SecureServer & { closeAllConnections?: () => void };
    all.closeAllConnections?.();
    await Promise.race([closed, delay(1000)]);
    this.h2Pool.destroyAll();
    this.appAgent.destroy();
  }

  // -------------------------------------------------------------------------------------------

  private onConnection(socket: StatefulSocket): void {
    const state: ConnState = {
      headerStart: 0,
      open: 0,
      identity: undefined,
      failure: undefined,
      resolvedFor: undefined,
      module: undefined,
      namespace: undefined,
    };
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) {
      state.failure = { code: SidecarCode.InvalidPeerIdentity, message: 'no client certificate' };
    } else {
      const check = identityOfCertificate(cert, this.opts.trustDomain, this.deps.clock());
      if (check.ok) state.identity = check.identity;
      else {
        state.failure = { code: check.code, message: check.message };
        if (check.spiffeId !== undefined) state.failure.spiffeId = check.spiffeId;
      }
    }
    socket[CONN] = state;
  }

  /**
   * Slow-header defence for HTTP/1.1 (the allowHTTP1 path does not enforce headersTimeout): notes
   * when a request's first bytes arrive, and the sweeper closes connections whose headers take too
   * long. Registered after Node's own listener, so the parser sees each chunk first (a chunk that
   * completes the headers has already started the request when this runs).
   */
  private trackHeaders(socket: StatefulSocket): void {
    const state = socket[CONN];
    if (state === undefined || socket.alpnProtocol === 'h2') return;
    socket.on('data', () => {
      if (state.open === 0 && state.headerStart === 0) state.headerStart = performance.now();
    });
    this.h1Conns.add(socket);
    socket.once('close', () => this.h1Conns.delete(socket));
  }

  /** Closes HTTP/1.1 connections that started a request but sent no complete headers in time. */
  private sweep(): void {
    const limit = this.opts.headersTimeoutMs ?? 10_000;
    const now = performance.now();
    for (const socket of this.h1Conns) {
      const st = socket[CONN];
      if (st !== undefined && st.headerStart !== 0 && now - st.headerStart > limit) {
        this.deps.logger.debug?.('closing a connection whose request headers are too slow');
        socket.destroy();
      }
    }
  }

  private onRequest(req: AnyRequest, res: AnyResponse): void {
    const h2 = req.httpVersionMajor === 2;
    const grpc = h2 && isGrpcContentType(req.headers['content-type']);
    const call: Call = {
      started: performance.now(),
      requestId: randomUUID(),
      method: req.method ?? '',
      path: '',
      protocol: grpc ? 'grpc' : h2 ? 'h2' : 'http/1.1',
      caller: null,
      callerModule: null,
      callerNamespace: null,
      decision: 'deny',
      reason: '',
      policy: null,
      rule: null,
      snapshotVersion: null,
      bytesIn: 0,
      bytesOut: 0,
      masked: 0,
      tokenized: 0,
      deferEnd: false,
      done: false,
    };
    this.inFlight += 1;
    const conn = h2 ? undefined : (req.socket as StatefulSocket)[CONN];
    if (conn !== undefined) {
      conn.headerStart = 0;
      conn.open += 1;
    }
    res.once('close', () => {
      if (conn !== undefined) conn.open -= 1;
      if (!call.deferEnd) this.callEnded(call, res);
    });
    try {
      this.handle(req, res, call, grpc);
    } catch (e) {
      this.deps.logger.error('inbound handler failed', {
        error: e instanceof Error ? e : String(e),
      });
      this.refuse(req, res, call, grpc, 500, SidecarCode.Internal, 'internal error', null);
    }
  }

  private handle(req: AnyRequest, res: AnyResponse, call: Call, grpc: boolean): void {
    const { deps } = this;
    const target = req.url ?? '';
    call.path = rawPathForAudit(target);
    if (req.rawHeaders.length > 2 * MAX_HEADER_FIELDS) {
      closeAfter(req, res);
      return this.refuse(
        req,
        res,
        call,
        grpc,
        431,
        SidecarCode.RequestHeadersTooLarge,
        `more than ${MAX_HEADER_FIELDS} header fields`,
        null,
      );
    }
    if (this.closing) {
      return this.refuse(
        req,
        res,
        call,
        grpc,
        503,
        SidecarCode.ShuttingDown,
        'sidecar is shutting down',
        null,
      );
    }
    if (!deps.audit.accepting()) {
      deps.metrics.auditDropped.inc();
      return this.refuse(
        req,
        res,
        call,
        grpc,
        503,
        SidecarCode.AuditUnavailable,
        'audit log unavailable',
        null,
      );
    }
    if (grpc && call.method !== 'POST') {
      return this.refuse(
        req,
        res,
        call,
        grpc,
        400,
        SidecarCode.BadRequest,
        'gRPC calls use POST',
        null,
      );
    }
    const conn = (req.socket as StatefulSocket)[CONN];
    if (conn?.identity === undefined) {
      const f = conn?.failure ?? { code: SidecarCode.InvalidPeerIdentity, message: 'no identity' };
      call.caller = f.spiffeId ?? null;
      closeAfter(req, res);
      return this.refuse(req, res, call, grpc, 403, f.code, f.message, null);
    }
    const identity = conn.identity;
    call.caller = identity.spiffeId;
    const active = deps.policy.current;
    if (active === undefined) {
      return this.refuse(
        req,
        res,
        call,
        grpc,
        503,
        SidecarCode.NoPolicySnapshot,
        'no policy snapshot yet: every call is denied',
        null,
      );
    }
    call.snapshotVersion = active.version;
    const now = deps.clock();
    const invalid = checkValidity(identity, now);
    if (invalid !== undefined) {
      closeAfter(req, res);
      return this.refuse(
        req,
        res,
        call,
        grpc,
        403,
        SidecarCode.PeerCertificateNotValid,
        invalid,
        null,
      );
    }
    if (isRevoked(active, identity.spiffeId, identity.notBefore, now)) {
      closeAfter(req, res);
      return this.refuse(
        req,
        res,
        call,
        grpc,
        403,
        SidecarCode.IdentityRevoked,
        'caller identity is revoked',
        null,
      );
    }
    if (conn.resolvedFor !== active) {
      const resolved = deps.identityResolver(identity, active.snapshot);
      conn.resolvedFor = active;
      conn.module = resolved?.module;
      conn.namespace = resolved?.namespace;
    }
    if (conn.module === undefined || conn.namespace === undefined) {
      return this.refuse(
        req,
        res,
        call,
        grpc,
        403,
        SidecarCode.UnknownCaller,
        'no module is bound to the caller identity',
        null,
      );
    }
    call.callerModule = conn.module;
    call.callerNamespace = conn.namespace;

    const decision: Decision = grpc
      ? decide(active.compiled, this.opts.module, {
          kind: 'grpc',
          callerModule: conn.module,
          callerNamespace: conn.namespace,
          path: target,
        })
      : decide(active.compiled, this.opts.module, {
          kind: 'http',
          callerModule: conn.module,
          callerNamespace: conn.namespace,
          method: call.method,
          target,
        });
    if (decision.normalizedPath !== undefined) call.path = decision.normalizedPath;
    call.policy = decision.matched?.policy ?? null;
    call.rule = decision.matched?.ruleIndex ?? null;
    call.reason = decision.reason;
    call.message = decision.message;
    if (!decision.allowed) {
      return this.refuse(req, res, call, grpc, 403, decision.reason, decision.message, call.policy);
    }
    const auditMode =
      decision.reason === DecisionReason.AuditWouldDeny || decision.matched?.mode === 'Audit';
    if (decision.reason === DecisionReason.AuditWouldDeny) {
      call.decision = 'audit';
      if (decision.wouldBe !== undefined) call.wouldBe = decision.wouldBe;
    } else {
      call.decision = 'allow';
    }
    if (decision.rateLimit !== undefined && decision.matched !== undefined) {
      const r = deps.rateLimiter.take(
        `${decision.matched.policy}\n${identity.spiffeId}`,
        decision.rateLimit,
        now,
      );
      if (!r.ok) {
        deps.metrics.rateLimited.inc({ direction: 'inbound' });
        if (!auditMode) {
          return this.refuse(
            req,
            res,
            call,
            grpc,
            429,
            SidecarCode.RateLimited,
            `rate limit of policy ${decision.matched.policy} exceeded`,
            call.policy,
            {
              'retry-after': String(r.retryAfterSeconds),
            },
          );
        }
        call.decision = 'audit';
        call.wouldBe = SidecarCode.RateLimited;
      }
    }
    const dp = DataProtector.applies(decision.dataProtection) ? decision.dataProtection : undefined;
    const add: Record<string, string> = {
      [HEADER_CALLER]: identity.spiffeId,
      [HEADER_CALLER_MODULE]: conn.module,
      [HEADER_REQUEST_ID]: call.requestId,
    };
    if (call.policy !== null) add[HEADER_POLICY] = call.policy;
    if (grpc) {
      if (dp !== undefined && this.opts.grpcDataProtection === 'refuse') {
        call.decision = 'deny';
        return this.refuse(
          req,
          res,
          call,
          grpc,
          403,
          SidecarCode.ResponseNotMaskable,
          'gRPC responses cannot be masked and the policy has data protection',
          call.policy,
        );
      }
      return this.forwardGrpc(req as Http2ServerRequest, res as Http2ServerResponse, call, add);
    }
    this.forwardHttp(req, res, call, add, dp);
  }

  // --- HTTP -----------------------------------------------------------------------------------

  private forwardHttp(
    req: AnyRequest,
    res: AnyResponse,
    call: Call,
    add: Record<string, string>,
    dp: DataProtection | undefined,
  ): void {
    const lenHeader = req.headers['content-length'];
    const declared = lenHeader === undefined ? undefined : Number(lenHeader);
    if (declared !== undefined && !(declared >= 0)) {
      return this.refuse(
        req,
        res,
        call,
        false,
        400,
        SidecarCode.BadRequest,
        'invalid content-length',
        call.policy,
      );
    }
    if (declared !== undefined && declared > this.maxBody) {
      closeAfter(req, res);
      return this.refuse(
        req,
        res,
        call,
        false,
        413,
        SidecarCode.RequestTooLarge,
        `request body exceeds ${this.maxBody} bytes`,
        call.policy,
      );
    }
    const hasBody =
      req.httpVersionMajor === 2
        ? (req as Http2ServerRequest).stream.endAfterHeaders !== true
        : declared !== undefined
          ? declared > 0
          : req.headers['transfer-encoding'] !== undefined;
    if (declared !== undefined) call.bytesIn = declared;
    const url = req.url ?? '/';
    const hash = url.indexOf('#');
    const handler = new ResponseHandler(this, req, res, call, dp);
    const abort = forward(
      this.appTarget,
      {
        method: call.method,
        path: hash < 0 ? url : url.slice(0, hash),
        headers: forwardRequestHeaders(req.headers, add),
        body: hasBody ? req : null,
        bodyLimit: this.maxBody,
        onBodyBytes: (n) => (call.bytesIn = n),
        headersTimeoutMs: this.opts.upstreamHeadersTimeoutMs ?? 30_000,
        bodyTimeoutMs: this.opts.upstreamBodyTimeoutMs ?? 300_000,
      },
      (upstream) => handler.onResponse(upstream),
      (err) => this.upstreamFailed(req, res, call, err),
    );
    res.once('close', () => {
      if (!res.writableFinished) abort();
    });
  }

  /** Masks a buffered JSON body and sends it; 502 when it cannot be masked. */
  async sendMasked(
    res: AnyResponse,
    req: AnyRequest,
    call: Call,
    status: number,
    headers: Record<string, string | string[] | undefined>,
    chunks: Buffer[],
    total: number,
    dp: DataProtection,
  ): Promise<void> {
    const out = forwardResponseHeaders(headers, BODY_DESCRIBING_HEADERS);
    if (total === 0) {
      out['content-length'] = '0';
      res.writeHead(status, out as Record<string, string>);
      res.end();
      return;
    }
    if (!isJsonContentType(firstHeader(headers['content-type']))) {
      return this.failClosed(
        req,
        res,
        call,
        SidecarCode.ResponseNotMaskable,
        'response is not JSON and the policy masks fields',
      );
    }
    let doc: unknown;
    try {
      const decoded = await decodeBody(
        Buffer.concat(chunks, total),
        firstHeader(headers['content-encoding']),
        this.maskLimit,
      );
      let text = decoded.toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      doc = JSON.parse(text);
    } catch (e) {
      if (e instanceof DecodeError && e.kind === 'TooLarge') {
        return this.failClosed(req, res, call, SidecarCode.ResponseTooLarge, e.message);
      }
      const msg = e instanceof DecodeError ? e.message : 'response body is not valid JSON';
      return this.failClosed(req, res, call, SidecarCode.ResponseNotMaskable, msg);
    }
    let result;
    try {
      result = this.deps.protector.protect(doc, dp);
    } catch (e) {
      return this.failClosed(
        req,
        res,
        call,
        SidecarCode.ResponseNotMaskable,
        e instanceof Error ? e.message : 'masking failed',
      );
    }
    call.masked = result.masked;
    call.tokenized = result.tokenized;
    const body = Buffer.from(JSON.stringify(doc), 'utf8');
    out['content-length'] = String(body.length);
    if (res.destroyed) return;
    res.writeHead(status, out as Record<string, string>);
    call.bytesOut = body.length;
    res.end(body);
  }

  /** 502 with an audit record: an unmaskable body is never passed on. */
  failClosed(req: AnyRequest, res: AnyResponse, call: Call, code: string, message: string): void {
    this.deps.logger.warn('response refused: cannot apply data protection', {
      requestId: call.requestId,
      code,
      message,
      policy: call.policy,
    });
    call.bytesOut = 0;
    this.refuse(req, res, call, false, 502, code, message, call.policy);
  }

  /** The app could not be reached or timed out before responding. */
  upstreamFailed(req: AnyRequest, res: AnyResponse, call: Call, err: ForwardError): void {
    if (res.destroyed) return;
    if (err.code === 'TooLarge') {
      closeAfter(req, res);
      return this.refuse(
        req,
        res,
        call,
        false,
        413,
        SidecarCode.RequestTooLarge,
        err.message,
        call.policy,
      );
    }
    this.deps.logger.warn('app unavailable', { requestId: call.requestId, error: err.message });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err.code === 'Timeout') {
      this.refuse(
        req,
        res,
        call,
        false,
        504,
        SidecarCode.UpstreamTimeout,
        'the app did not answer in time',
        call.policy,
      );
    } else {
      this.refuse(
        req,
        res,
        call,
        false,
        503,
        SidecarCode.UpstreamUnavailable,
        'the app is unavailable',
        call.policy,
      );
    }
  }

  // --- gRPC -----------------------------------------------------------------------------------

  private forwardGrpc(
    req: Http2ServerRequest,
    res: Http2ServerResponse,
    call: Call,
    add: Record<string, string>,
  ): void {
    const down = req.stream;
    const headers: OutgoingHttpHeaders = forwardRequestHeaders(req.headers, add, true);
    delete headers['host'];
    headers[':method'] = call.method;
    headers[':path'] = req.url;
    headers[':scheme'] = 'http';
    headers[':authority'] = req.headers[':authority'] ?? `127.0.0.1:${this.opts.appPort}`;
    const session = this.h2Pool.get('app', this.appGrpcOrigin, undefined);
    call.deferEnd = true;
    forwardH2Stream(
      down,
      session,
      headers,
      down.endAfterHeaders,
      (r) => {
        call.bytesIn = r.bytesIn;
        call.bytesOut = r.bytesOut;
        if (r.grpcStatus !== undefined) call.grpcStatus = r.grpcStatus;
        else if (r.reset === true) call.grpcStatus = GrpcStatus.CANCELLED;
        this.callEnded(call, res);
      },
      (err) => {
        this.deps.logger.warn('app unavailable (gRPC)', {
          requestId: call.requestId,
          error: err.message,
        });
        this.refuse(
          req,
          res,
          call,
          true,
          503,
          SidecarCode.UpstreamUnavailable,
          'the app is unavailable',
          call.policy,
        );
        this.callEnded(call, res);
      },
    );
  }

  // --- responses, audit -----------------------------------------------------------------------

  /** Answers with an error: JSON `{code, reason, policy}`, or a gRPC trailers-only status. */
  refuse(
    req: AnyRequest,
    res: AnyResponse,
    call: Call,
    grpc: boolean,
    status: number,
    code: string,
    message: string,
    policy: string | null,
    extra?: Record<string, string>,
  ): void {
    // Authorization refusals are denials; a 5xx after an allowing decision keeps that decision
    // (the status and reason say what failed).
    if (status < 500) call.decision = 'deny';
    call.reason = code;
    call.message = message;
    if (call.decision === 'deny') {
      this.deps.metrics.denied.inc({ direction: 'inbound', reason: code });
    }
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (grpc) {
      const grpcStatus =
        code === SidecarCode.ResponseNotMaskable
          ? GrpcStatus.FAILED_PRECONDITION
          : grpcStatusForHttp(status);
      call.grpcStatus = grpcStatus;
      respondGrpcError((req as Http2ServerRequest).stream, grpcStatus, `${code}: ${message}`, {
        [HEADER_REQUEST_ID]: call.requestId,
        ...extra,
      });
      return;
    }
    const body = JSON.stringify({ code, reason: message, policy });
    res.writeHead(status, {
      ...JSON_HEADERS,
      'content-length': String(Buffer.byteLength(body)),
      [HEADER_REQUEST_ID]: call.requestId,
      ...extra,
    });
    res.end(body);
    // Unread request body: let Node discard it (HTTP/1.1 keeps the connection usable).
    if (!req.readableEnded) req.resume();
  }

  private callEnded(call: Call, res: AnyResponse): void {
    if (call.done) return;
    call.done = true;
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.drainWaiters.length > 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
    const status = res.statusCode;
    const seconds = (performance.now() - call.started) / 1000;
    const { metrics, audit } = this.deps;
    this.durationChild.observe(seconds);
    metrics.countRequest(
      'inbound',
      call.decision,
      call.callerModule ?? 'unknown',
      this.opts.module,
    );
    if (call.masked > 0) metrics.masked.inc(call.masked);
    if (call.tokenized > 0) metrics.tokenized.inc(call.tokenized);
    if (call.reason === SidecarCode.AuditUnavailable) return;
    const record: AuditRecord = {
      requestId: call.requestId,
      direction: 'inbound',
      caller: call.caller,
      callerModule: call.callerModule,
      callerNamespace: call.callerNamespace,
      destination: this.opts.module,
      method: call.method,
      path: call.path,
      protocol: call.protocol,
      decision: call.decision,
      reason: call.reason,
      policy: call.policy,
      rule: call.rule,
      status,
      durationMs: Math.round(seconds * 1e6) / 1e3,
      bytesIn: call.bytesIn,
      bytesOut: call.bytesOut,
      masked: call.masked,
      tokenized: call.tokenized,
      snapshotVersion: call.snapshotVersion,
    };
    if (call.wouldBe !== undefined) record.wouldBe = call.wouldBe;
    if (call.grpcStatus !== undefined) record.grpcStatus = call.grpcStatus;
    if (call.decision !== 'allow' && call.message !== undefined)
      record.message = call.message.slice(0, 300);
    if (!audit.append(record)) metrics.auditDropped.inc();
    metrics.auditQueue.set(audit.queueLength);
  }
}

/** Streams the app's response back, or buffers it when data protection applies. */
class ResponseHandler {
  constructor(
    private readonly inbound: InboundServer,
    private readonly req: AnyRequest,
    private readonly res: AnyResponse,
    private readonly call: Call,
    private readonly dp: DataProtection | undefined,
  ) {}

  onResponse(upstream: IncomingMessage): void {
    const { res, call } = this;
    const status = upstream.statusCode ?? 502;
    const noBody = call.method === 'HEAD' || status === 204 || status === 304;
    if (res.destroyed) {
      upstream.destroy();
      return;
    }
    if (this.dp !== undefined && !noBody) return this.buffer(upstream, status, this.dp);
    const headers = forwardResponseHeaders(upstream.headers);
    headers[HEADER_REQUEST_ID] = call.requestId;
    relayResponse(upstream, res, status, headers, (n) => (call.bytesOut = n));
  }

  /** Collects the body up to the masking limit, then masks it (sendMasked) or fails closed. */
  private buffer(upstream: IncomingMessage, status: number, dp: DataProtection): void {
    const { inbound, req, res, call } = this;
    const limit = inbound.maskLimit;
    const tooLarge = (): void => {
      upstream.destroy();
      inbound.failClosed(
        req,
        res,
        call,
        SidecarCode.ResponseTooLarge,
        `response body exceeds the masking limit of ${limit} bytes`,
      );
    };
    if (Number(upstream.headers['content-length'] ?? 0) > limit) return tooLarge();
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    upstream.on('data', (c: Buffer) => {
      if (failed) return;
      total += c.length;
      if (total > limit) {
        failed = true;
        chunks.length = 0;
        return tooLarge();
      }
      chunks.push(c);
    });
    const broken = (): void => {
      if (failed) return;
      failed = true;
      inbound.upstreamFailed(
        req,
        res,
        call,
        new ForwardError('Unavailable', 'the app response broke off'),
      );
    };
    upstream.once('aborted', broken);
    upstream.once('error', broken);
    upstream.once('end', () => {
      if (failed) return;
      inbound
        .sendMasked(res, req, call, status, upstream.headers, chunks, total, dp)
        .catch((e: unknown) =>
          inbound.failClosed(
            req,
            res,
            call,
            SidecarCode.Internal,
            e instanceof Error ? e.message : String(e),
          ),
        );
    });
  }
}

// --- helpers ----------------------------------------------------------------------------------

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The raw target for the audit record when normalisation failed: no query, cut, escaped by JSON. */
function rawPathForAudit(target: string): string {
  const q = target.search(/[?#]/);
  const path = q < 0 ? target : target.slice(0, q);
  return path.length > 256 ? `${path.slice(0, 256)}…` : path;
}

/** HTTP/1.1: close the connection after this response; HTTP/2: GOAWAY the session. */
function closeAfter(req: AnyRequest, res: AnyResponse): void {
  if (req.httpVersionMajor === 2) {
    const session = (req as Http2ServerRequest).stream.session;
    res.once('finish', () => session?.close());
  } else {
    (res as ServerResponse).shouldKeepAlive = false;
  }
}

function tlsFailureReason(err: Error & { code?: string }): string {
  const code = err.code ?? '';
  if (
    code.includes('CERTIFICATE_REQUIRED') ||
    /peer did not return a certificate/i.test(err.message)
  )
    return 'NoClientCertificate';
  if (code.includes('CERT') || /certificate/i.test(err.message)) return 'BadCertificate';
  if (code === 'ERR_SSL_HTTP_REQUEST' || /http request/i.test(err.message))
    return 'PlaintextRequest';
  if (code.includes('TIMEOUT') || /timed? ?out/i.test(err.message)) return 'Timeout';
  return 'ProtocolError';
}

function dedupe(list: readonly string[]): string[] {
  return [...new Set(list)];
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
