/**
 * The audit log: one JSON line per call, hash-chained, appended through a bounded queue.
 *
 * Chain: every line ends with `"prev":"<hex>"`, the SHA-256 of the previous line's bytes (without
 * its newline); the first line of a new chain has 64 zeros. Changing, inserting or deleting a line
 * breaks the chain at the next line; `seq` counts records so a gap is named. Rotation continues the
 * chain into the next file. What a chain cannot show by itself: a cut at the tail, or a rewrite of
 * everything after some point by someone who recomputes the hashes; the sidecar logs the chain head
 * (seq + hash) at every rotation and at shutdown so it can be anchored elsewhere.
 *
 * Durability: lines are written in batches as soon as the previous write returns (group commit),
 * and fdatasync runs at most every `syncIntervalMs` (default 10 ms) while there is unsynced data.
 * A record is *acknowledged* once an fdatasync that started after its write has returned;
 * acknowledged records survive a crash or power loss. The response to a call does not wait for its
 * record: a crash loses at most the records still queued or written but not yet synced (bounded by
 * `maxQueue` and about `syncIntervalMs` of traffic). `flush()`
 * waits until everything appended so far is acknowledged. When the sink fails or the queue is full,
 * `accepting()` is false and the sidecar refuses new calls (503 AuditUnavailable) instead of serving
 * them unaudited; a failed write is retried (same bytes, same order) until it succeeds.
 */
import { createHash } from 'node:crypto';
import { createReadStream, writeSync } from 'node:fs';
import { mkdir, open, readdir, rename, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

import type { Clock, SidecarLogger } from './types.js';

export const GENESIS_HASH = '0'.repeat(64);
export const AUDIT_RECORD_VERSION = 1;

export type AuditDecision = 'allow' | 'deny' | 'audit';

/** One call as the sidecar saw it. `time`, `seq` and `prev` are added by the log. */
export interface AuditRecord {
  requestId: string;
  direction: 'inbound' | 'outbound';
  /** SPIFFE ID of the caller (inbound: the peer; outbound: this workload), null when unknown. */
  caller: string | null;
  callerModule: string | null;
  callerNamespace?: string | null;
  /** Module called (inbound: this module; outbound: the destination), or the egress host. */
  destination: string | null;
  method: string;
  /** Normalised path (HTTP), `/package.Service/Method` (gRPC) or, when rejected, the raw target (cut). */
  path: string;
  protocol: 'http/1.1' | 'h2' | 'grpc';
  decision: AuditDecision;
  /** DecisionReason or SidecarCode. */
  reason: string;
  /** Audit mode: what Enforce mode would have answered. */
  wouldBe?: string;
  policy: string | null;
  rule: number | null;
  /** HTTP status sent (for gRPC: the HTTP status; `grpcStatus` holds the gRPC one). */
  status: number;
  grpcStatus?: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  masked: number;
  tokenized: number;
  snapshotVersion: number | null;
  /** Short explanation (decision message, error). */
  message?: string;
}

export interface AuditLogOptions {
  /** File to append to, or `-` for stdout (no fsync, no rotation). */
  path: string;
  /** Records waiting to be written before new calls are refused; default 10 000. */
  maxQueue?: number;
  /** Records per write + fdatasync; default 512. */
  maxBatch?: number;
  /** Rotate when the file exceeds this size; default 100 MiB; 0 disables rotation. */
  maxFileBytes?: number;
  /** fdatasync written records (default true); false: acknowledged once written. */
  sync?: boolean;
  /** Longest time between fdatasync calls while data is unsynced; default 10 ms. */
  syncIntervalMs?: number;
  clock?: Clock;
  logger?: SidecarLogger;
}

interface Waiter {
  seq: number;
  resolve: () => void;
}

export class AuditLog {
  private readonly queue: string[] = [];
  private queueSeqEnd = 0;
  private seq: number;
  private head: string;
  private acked: number;
  private written: number;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private lastSync = 0;
  private readonly syncIntervalMs: number;
  private writing = false;
  private scheduled = false;
  private failed: Error | undefined;
  private closed = false;
  private fatal = false;
  private size: number;
  private waiters: Waiter[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly maxFileBytes: number;
  private readonly sync: boolean;
  private readonly clock: Clock;

  private constructor(
    private readonly opts: AuditLogOptions,
    private fh: FileHandle | undefined,
    tail: { seq: number; hash: string; size: number },
  ) {
    this.seq = tail.seq;
    this.acked = tail.seq;
    this.written = tail.seq;
    this.queueSeqEnd = tail.seq;
    this.head = tail.hash;
    this.size = tail.size;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.maxBatch = opts.maxBatch ?? 512;
    this.maxFileBytes = opts.maxFileBytes ?? 100 * 1024 * 1024;
    this.sync = opts.sync ?? true;
    this.syncIntervalMs = opts.syncIntervalMs ?? 10;
    this.clock = opts.clock ?? Date.now;
  }

  /** Opens (or creates) the log and continues the chain of what is already there. */
  static async open(opts: AuditLogOptions): Promise<AuditLog> {
    if (opts.path === '-')
      return new AuditLog(opts, undefined, { seq: 0, hash: GENESIS_HASH, size: 0 });
    await mkdir(dirname(opts.path), { recursive: true });
    const fh = await open(opts.path, 'a+');
    try {
      let tail = await readTail(fh, true, opts.logger, opts.path);
      if (tail.seq === 0) {
        // A fresh file right after a rotation: the chain continues from the newest rotated file.
        const rotated = await rotatedFiles(opts.path);
        const last = rotated[rotated.length - 1];
        if (last !== undefined) {
          const rfh = await open(last, 'r');
          try {
            const t = await readTail(rfh, false, opts.logger, last);
            tail = { ...t, size: tail.size };
          } finally {
            await rfh.close();
          }
        }
      }
      return new AuditLog(opts, fh, tail);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** False when the sink failed, the queue is full or the log is closed: refuse the call. */
  accepting(): boolean {
    return !this.closed && this.failed === undefined && this.queue.length < this.maxQueue;
  }

  get healthy(): boolean {
    return this.failed === undefined && !this.closed;
  }

  /** True after a failure that only a restart clears (a failed fdatasync). */
  get broken(): boolean {
    return this.fatal;
  }

  get queueLength(): number {
    return this.queue.length;
  }

  /** Chain head: the last record appended (maybe not yet acknowledged). */
  get chainHead(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.head };
  }

  /** Seq of the last acknowledged (durable) record. */
  get acknowledged(): number {
    return this.acked;
  }

  /** Appends one record; false (record dropped) when not accepting. */
  append(record: AuditRecord): boolean {
    if (!this.accepting()) return false;
    this.seq += 1;
    const line =
      `{"v":${AUDIT_RECORD_VERSION},"seq":${this.seq},"time":${JSON.stringify(new Date(this.clock()).toISOString())},` +
      JSON.stringify(record).slice(1, -1) +
      `,"prev":"${this.head}"}`;
    this.head = createHash('sha256').update(line).digest('hex');
    this.queue.push(line + '\n');
    this.queueSeqEnd = this.seq;
    this.kick();
    return true;
  }

  /** Resolves when every record appended so far is acknowledged (durable). */
  flush(): Promise<void> {
    if (this.acked >= this.seq) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ seq: this.seq, resolve }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.race([this.flush(), this.failedPromise()]);
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    while (this.syncing !== undefined) await this.syncing;
    this.opts.logger?.info('audit chain head', {
      seq: this.seq,
      hash: this.head,
      path: this.opts.path,
    });
    await this.fh?.close();
    this.fh = undefined;
  }

  private failedPromise(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.failed !== undefined || this.acked >= this.seq) resolve();
        else setTimeout(check, 50).unref();
      };
      check();
    });
  }

  /** Writes on the next turn of the event loop: records appended in this turn share one write. */
  private kick(): void {
    if (this.writing || this.retryTimer !== undefined || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        const n = Math.min(this.maxBatch, this.queue.length);
        const buf = Buffer.from(this.queue.slice(0, n).join(''), 'utf8');
        const lastSeq = this.queueSeqEnd - (this.queue.length - n);
        await this.write(buf);
        // Only now leave the queue: a failed write is retried with the same lines.
        this.queue.splice(0, n);
        this.written = lastSeq;
        this.size += buf.length;
        if (this.failed !== undefined && !this.fatal) {
          this.opts.logger?.info('audit sink recovered', { path: this.opts.path });
          this.failed = undefined;
        }
        if (!this.sync || this.fh === undefined) {
          this.acked = lastSeq;
          this.wake();
        } else {
          this.scheduleSync();
        }
        if (this.maxFileBytes > 0 && this.fh !== undefined && this.size >= this.maxFileBytes) {
          await this.syncNow();
          await this.rotate();
        }
      }
    } catch (e) {
      this.failed = e instanceof Error ? e : new Error(String(e));
      this.opts.logger?.error('audit sink failed; refusing calls until it recovers', {
        path: this.opts.path,
        error: this.failed,
      });
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        if (!this.closed && !this.fatal) this.kick();
      }, 1000);
      this.retryTimer.unref();
    } finally {
      this.writing = false;
    }
  }

  private async write(buf: Buffer): Promise<void> {
    if (this.fh === undefined) {
      if (this.opts.path !== '-') throw new Error('audit log is closed');
      await new Promise<void>((resolve, reject) =>
        process.stdout.write(buf, (err) => (err ? reject(err) : resolve())),
      );
      return;
    }
    // A synchronous append to the page cache costs a few microseconds; an async write costs a
    // thread-pool round trip per batch. The slow part, fdatasync, stays asynchronous.
    const fd = this.fh.fd;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  }

  private scheduleSync(): void {
    if (this.syncTimer !== undefined || this.syncing !== undefined) return;
    const wait = Math.max(0, this.lastSync + this.syncIntervalMs - Date.now());
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncNow().catch(() => undefined);
    }, wait);
    this.syncTimer.unref();
  }

  /** fdatasync what is written; acknowledges it. Never two at once (rotation waits for it). */
  private async syncNow(): Promise<void> {
    while (this.syncing !== undefined) await this.syncing;
    const fh = this.fh;
    if (fh === undefined || this.written <= this.acked) return;
    const upto = this.written;
    this.syncing = (async () => {
      try {
        await fh.datasync();
        this.lastSync = Date.now();
        this.acked = Math.max(this.acked, upto);
        this.wake();
      } catch (e) {
        // Not retried: after a failed fsync the kernel may have dropped the dirty pages, so a
        // later success would not prove these records durable. Refuse calls until a restart.
        this.failed = e instanceof Error ? e : new Error(String(e));
        this.fatal = true;
        this.opts.logger?.error('audit sink failed to sync; refusing calls until restarted', {
          path: this.opts.path,
          error: this.failed,
        });
      }
    })();
    try {
      await this.syncing;
    } finally {
      this.syncing = undefined;
    }
    if (this.failed === undefined && this.written > this.acked) this.scheduleSync();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.seq <= this.acked) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async rotate(): Promise<void> {
    const fh = this.fh;
    if (fh === undefined) return;
    const stamp = new Date(this.clock()).toISOString().replace(/[-:.]/g, '');
    const target = `${this.opts.path}.${stamp}-${String(this.seq).padStart(12, '0')}`;
    await fh.close();
    this.fh = undefined;
    await rename(this.opts.path, target);
    this.fh = await open(this.opts.path, 'a+');
    this.size = 0;
    this.opts.logger?.info('audit log rotated; chain head', {
      seq: this.seq,
      hash: this.head,
      rotatedTo: target,
    });
  }
}

/** Rotated siblings of `path`, oldest first. */
export async function rotatedFiles(path: string): Promise<string[]> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(prefix) && /^\d{8}T\d{9}Z-\d{12}$/.test(n.slice(prefix.length)))
    .sort()
    .map((n) => join(dir, n));
}

/** The chain files of a log in order: rotated ones, then the active one. */
export async function auditChainFiles(path: string): Promise<string[]> {
  const files = await rotatedFiles(path);
  try {
    if ((await stat(path)).isFile()) files.push(path);
  } catch {
    // no active file
  }
  return files;
}

/**
 * Seq and hash of the last complete line. With `repair`, a torn last line (no newline: a write
 * interrupted by a crash, never acknowledged) is cut off so the chain can continue.
 */
async function readTail(
  fh: FileHandle,
  repair: boolean,
  logger: SidecarLogger | undefined,
  path: string,
): Promise<{ seq: number; hash: string; size: number }> {
  let size = (await fh.stat()).size;
  if (size === 0) return { seq: 0, hash: GENESIS_HASH, size: 0 };
  const window = Math.min(size, 1024 * 1024);
  const buf = Buffer.alloc(window);
  await fh.read(buf, 0, window, size - window);
  let text = buf.toString('utf8');
  if (!text.endsWith('\n')) {
    const cut = text.lastIndexOf('\n');
    const dropped = text.length - (cut + 1);
    if (!repair) throw new Error(`${path}: last line is incomplete`);
    logger?.warn('audit log ends with an incomplete line (never acknowledged); truncating it', {
      path,
      droppedBytes: dropped,
    });
    size -= Buffer.byteLength(text.slice(cut + 1), 'utf8');
    await fh.truncate(size);
    text = text.slice(0, cut + 1);
    if (cut < 0) return { seq: 0, hash: GENESIS_HASH, size };
  }
  const body = text.slice(0, -1);
  const line = body.slice(body.lastIndexOf('\n') + 1);
  const hash = createHash('sha256').update(line).digest('hex');
  let seq: unknown;
  try {
    seq = (JSON.parse(line) as { seq?: unknown }).seq;
  } catch {
    throw new Error(`${path}: last line is not an audit record`);
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq)) {
    throw new Error(`${path}: last line has no seq`);
  }
  return { seq, hash, size };
}

export type ChainBreakReason = 'Unparsable' | 'HashMismatch' | 'SeqGap' | 'IncompleteLine';

export interface ChainVerification {
  ok: boolean;
  records: number;
  /** Seq of the first and last records read. */
  firstSeq: number | null;
  lastSeq: number | null;
  /** Hash of the last line: compare with an anchored chain head. */
  head: string;
  /** True when the first record starts a chain (prev = 64 zeros); false: earlier files are missing. */
  startsAtGenesis: boolean;
  firstBreak?: {
    file: string;
    line: number;
    seq: number | null;
    reason: ChainBreakReason;
    message: string;
  };
}

/** Checks the hash chain across `files` (in order) and reports the first break. */
export async function verifyAuditChain(
  files: string | readonly string[],
): Promise<ChainVerification> {
  const list = typeof files === 'string' ? [files] : files;
  const result: ChainVerification = {
    ok: true,
    records: 0,
    firstSeq: null,
    lastSeq: null,
    head: GENESIS_HASH,
    startsAtGenesis: false,
  };
  let prevHash: string | undefined;
  let prevSeq: number | undefined;
  for (const file of list) {
    const stream = createReadStream(file, { encoding: 'utf8' });
    const endsWithNewline = await fileEndsWithNewline(file);
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let lineNo = 0;
    const fail = (
      reason: ChainBreakReason,
      message: string,
      seq: number | null,
    ): ChainVerification => {
      result.ok = false;
      result.firstBreak = { file, line: lineNo, seq, reason, message };
      lines.close();
      stream.destroy();
      return result;
    };
    for await (const line of lines) {
      lineNo += 1;
      let rec: { seq?: unknown; prev?: unknown };
      try {
        rec = JSON.parse(line) as { seq?: unknown; prev?: unknown };
      } catch {
        return fail('Unparsable', 'line is not JSON', null);
      }
      const seq = typeof rec.seq === 'number' ? rec.seq : null;
      if (seq === null || typeof rec.prev !== 'string') {
        return fail('Unparsable', 'line has no numeric seq or string prev', seq);
      }
      if (prevHash === undefined) {
        result.startsAtGenesis = rec.prev === GENESIS_HASH;
        result.firstSeq = seq;
      } else {
        if (rec.prev !== prevHash) {
          return fail(
            'HashMismatch',
            'prev does not match the hash of the previous line (a line was changed, inserted or removed)',
            seq,
          );
        }
        if (prevSeq !== undefined && seq !== prevSeq + 1) {
          return fail('SeqGap', `seq ${seq} follows ${prevSeq}`, seq);
        }
      }
      prevHash = createHash('sha256').update(line).digest('hex');
      prevSeq = seq;
      result.records += 1;
      result.lastSeq = seq;
      result.head = prevHash;
    }
    if (lineNo > 0 && !endsWithNewline) {
      return fail('IncompleteLine', 'the last line has no newline (torn write)', prevSeq ?? null);
    }
  }
  return result;
}

async function fileEndsWithNewline(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (size === 0) return true;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, size - 1);
    return b[0] === 0x0a;
  } finally {
    await fh.close();
  }
}
