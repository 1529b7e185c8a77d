/**
 * Serving certificate and key from files, reloaded on change without a restart.
 *
 * Watches the *directories* of both files: a Kubernetes Secret volume swaps a `..data` symlink,
 * so a watch on the file itself would keep pointing at the old inode. Events are debounced (cert
 * and key are written one after the other), the pair is checked with createSecureContext before
 * it is installed (a half-written pair keeps the old one), and a slow poll catches file systems
 * where watching is unreliable.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';

import { ErpguardError, ErrorCode } from '../errors/errors.js';

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  /** notAfter of the leaf certificate (ms since the epoch). */
  notAfterMs: number;
  /** sha256 of cert + key: tells a real change from a touch. */
  fingerprint: string;
}

/** Reads and checks a certificate/key pair; throws ErpguardError naming the file. */
export async function loadTlsPair(certFile: string, keyFile: string): Promise<TlsPair> {
  let cert: Buffer;
  let key: Buffer;
  try {
    [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
  } catch (e) {
    throw new ErpguardError(
      ErrorCode.FileUnreadable,
      `cannot read the webhook certificate or key: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  let notAfterMs: number;
  try {
    createSecureContext({ cert, key }); // throws on a bad PEM or a key that does not match
    notAfterMs = Date.parse(new X509Certificate(cert).validTo);
  } catch (e) {
    throw new ErpguardError(
      ErrorCode.InvalidConfig,
      `${certFile} and ${keyFile} are not a usable certificate and key: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const fingerprint = createHash('sha256').update(cert).update('\0').update(key).digest('hex');
  return { cert, key, notAfterMs, fingerprint };
}

export interface TlsReloaderOptions {
  certFile: string;
  keyFile: string;
  /** Installs a new pair (server.setSecureContext). */
  apply: (pair: TlsPair) => void;
  /** Reports each attempt: `changed` false means the files were unchanged. */
  onResult: (
    result: { ok: true; changed: boolean; pair: TlsPair } | { ok: false; error: Error },
  ) => void;
  debounceMs: number;
  pollMs: number;
}

export class TlsReloader {
  private current: TlsPair;
  private readonly watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    initial: TlsPair,
    private readonly opts: TlsReloaderOptions,
  ) {
    this.current = initial;
  }

  get pair(): TlsPair {
    return this.current;
  }

  start(): void {
    for (const dir of new Set([dirname(this.opts.certFile), dirname(this.opts.keyFile)])) {
      try {
        const w = watch(dir, { persistent: false }, () => this.schedule());
        w.on('error', (e) => this.opts.onResult({ ok: false, error: e })); // polling still runs
        this.watchers.push(w);
      } catch (e) {
        this.opts.onResult({ ok: false, error: e as Error });
      }
    }
    if (this.opts.pollMs > 0) {
      this.poll = setInterval(() => void this.reload(), this.opts.pollMs);
      this.poll.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    if (this.poll !== undefined) clearInterval(this.poll);
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.opts.debounceMs);
    this.debounce.unref();
  }

  /** Loads the files now; true when a new pair was installed. Concurrent calls coalesce. */
  async reload(): Promise<boolean> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let changed = false;
      do {
        this.again = false;
        changed = (await this.reloadOnce()) || changed;
      } while (this.again && !this.stopped);
      return changed;
    })();
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async reloadOnce(): Promise<boolean> {
    if (this.stopped) return false;
    try {
      const pair = await loadTlsPair(this.opts.certFile, this.opts.keyFile);
      if (pair.fingerprint === this.current.fingerprint) {
        this.opts.onResult({ ok: true, changed: false, pair });
        return false;
      }
      this.opts.apply(pair);
      this.current = pair;
      this.opts.onResult({ ok: true, changed: true, pair });
      return true;
    } catch (e) {
      this.opts.onResult({ ok: false, error: e as Error });
      return false;
    }
  }
}
