/**
 * A supervised informer: client-node's list+watch cache (makeInformer) plus what it lacks.
 *
 * client-node relists by itself after a 410 Gone and reconnects when the server closes a watch,
 * but any other error (network, TLS, 5xx, 403, a failed list) is emitted once and the informer
 * stops for good. The supervisor restarts it after an exponential backoff with jitter, resets the
 * backoff once the informer has made progress, and exposes `synced` (the first successful list has
 * filled the cache) for readiness. Objects are trimmed of `metadata.managedFields` before anybody
 * sees them: the field is large and nothing here reads it.
 */
import { makeInformer } from '@kubernetes/client-node';
import type {
  Informer,
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  ObjectCache,
} from '@kubernetes/client-node';

import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

import { backoffDelay } from './backoff.js';
import type { BackoffOptions } from './backoff.js';

export interface InformerHandlers<T> {
  add?: (obj: T) => void;
  update?: (obj: T) => void;
  delete?: (obj: T) => void;
}

/** What a list function returns: the items and the list's resourceVersion. */
export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export type ListFn<T> = () => Promise<ListResult<T>>;

export interface SupervisedInformerOptions<T> {
  /** For logs and metrics (`policies`, `pods`, ...). */
  name: string;
  kubeConfig: KubeConfig;
  /** The watch path, e.g. `/apis/apps/v1/deployments` (all namespaces). */
  path: string;
  /** The list call matching `path`. */
  list: ListFn<T>;
  /** Only objects with these labels are listed and watched (`erpguard.io/module`). */
  labelSelector?: string;
  /** Restart backoff. Default: 500 ms doubling to 30 s, half of it jittered. */
  backoff?: BackoffOptions;
  /** An informer that ran this long before failing starts over at the base delay. Default 60 s. */
  healthyAfterMs?: number;
  /** Called for each object before it is cached and handed out (may trim it in place). */
  trim?: (obj: T) => void;
  logger?: Logger;
  /** Called before each restart (metrics). */
  onRestart?: (info: {
    informer: string;
    attempt: number;
    delayMs: number;
    error: unknown;
  }) => void;
  random?: () => number;
  now?: () => number;
  /** Test seam: builds the underlying informer (default: client-node's makeInformer). */
  makeInformer?: typeof makeInformer;
}

export const DEFAULT_INFORMER_BACKOFF: BackoffOptions = {
  baseMs: 500,
  maxMs: 30_000,
  jitter: 0.5,
};

type Raw = KubernetesObject;

function stripManagedFields(obj: Raw): void {
  if (obj.metadata !== undefined) delete obj.metadata.managedFields;
}

export class SupervisedInformer<T> {
  readonly name: string;
  /** Resolves when the first list has filled the cache; never rejects (it retries). */
  readonly synced: Promise<void>;
  private resolveSynced!: () => void;
  private isSynced = false;
  private readonly informer: Informer<Raw> & ObjectCache<Raw>;
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly backoff: BackoffOptions;
  private readonly healthyAfterMs: number;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly now: () => number;
  private attempt = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private running = false;
  private listSucceeded = false;
  private restartCount = 0;
  private lastError: unknown;

  constructor(private readonly options: SupervisedInformerOptions<T>) {
    this.name = options.name;
    this.backoff = options.backoff ?? DEFAULT_INFORMER_BACKOFF;
    this.healthyAfterMs = options.healthyAfterMs ?? 60_000;
    this.log = (options.logger ?? silentLogger()).child({ informer: options.name });
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.synced = new Promise((resolve) => (this.resolveSynced = resolve));
    const trim = (obj: Raw): void => {
      stripManagedFields(obj);
      options.trim?.(obj as T);
    };
    const list = async (): Promise<KubernetesListObject<Raw>> => {
      const result = await options.list();
      const items = result.items as Raw[];
      items.forEach(trim);
      this.listSucceeded = true;
      this.attempt = 0;
      return { items, ...(result.metadata ? { metadata: result.metadata } : {}) };
    };
    const make = options.makeInformer ?? makeInformer;
    this.informer = make<Raw>(options.kubeConfig, options.path, list, options.labelSelector);
    // Registered first, so the cached object is trimmed before other callbacks see it.
    this.informer.on('add', (obj) => {
      trim(obj);
      this.progress();
      this.dispatch('add', obj);
    });
    this.informer.on('update', (obj) => {
      trim(obj);
      this.progress();
      this.dispatch('update', obj);
    });
    this.informer.on('delete', (obj) => {
      // Watch DELETED events carry the full object; give handlers the cached shape.
      trim(obj);
      this.progress();
      this.dispatch('delete', obj);
    });
    this.informer.on('error', (err?: unknown) => this.onError(err));
  }

  /** Registers handlers; objects already in the cache are not replayed (use list()). */
  on(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace) as T | undefined;
  }

  /** Cached objects, of one namespace or all. */
  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace) as readonly T[];
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  /** How often the informer was restarted after an error. */
  get restarts(): number {
    return this.restartCount;
  }

  /** The error that caused the last restart (for /readyz details). */
  get lastFailure(): unknown {
    return this.lastError;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.informer.stop();
  }

  private run(): void {
    this.startedAt = this.now();
    this.listSucceeded = false;
    this.informer.start().then(
      () => {
        // start() resolves after the list and the watch request; it also resolves (after
        // emitting 'error') when the list failed, hence the flag.
        if (this.listSucceeded && !this.isSynced && this.running) {
          this.isSynced = true;
          this.log.info('informer synced', { objects: this.informer.list().length });
          this.resolveSynced();
        }
      },
      (error: unknown) => this.onError(error),
    );
  }

  private progress(): void {
    this.attempt = 0;
  }

  private dispatch(verb: 'add' | 'update' | 'delete', obj: Raw): void {
    for (const h of this.handlers) {
      try {
        h[verb]?.(obj as T);
      } catch (error) {
        // One faulty handler must not stop the others or the watch.
        this.log.error('informer handler failed', { verb, err: error });
      }
    }
  }

  private onError(error: unknown): void {
    if (!this.running || this.restartTimer !== undefined) return;
    this.lastError = error;
    if (this.now() - this.startedAt >= this.healthyAfterMs) this.attempt = 0;
    const delayMs = backoffDelay(this.attempt, this.backoff, this.random);
    const attempt = this.attempt;
    this.attempt += 1;
    this.restartCount += 1;
    this.log.warn('informer failed; restarting', { attempt, delayMs, err: error });
    this.options.onRestart?.({ informer: this.name, attempt, delayMs, error });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.running) this.run();
    }, delayMs);
  }
}
