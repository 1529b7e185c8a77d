/**
 * Structured logging: one JSON object per line on stderr (or a sink you pass in). The message is
 * a constant sentence; variable data goes into fields, so logs can be searched and aggregated.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  readonly level: LogLevel;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  isLevelEnabled(level: Exclude<LogLevel, 'silent'>): boolean;
  /** A logger that adds `fields` to every line (later fields win over earlier ones). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Default: $ERPGUARD_LOG_LEVEL, else `info`. */
  level?: LogLevel;
  /** Receives each line without the trailing newline. Default: write to stderr. */
  sink?: (line: string) => void;
  /** Milliseconds since the epoch. Default: Date.now. */
  clock?: () => number;
  /** Fields added to every line. */
  fields?: LogFields;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
const RESERVED = new Set(['time', 'level', 'component', 'msg']);

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(RANK, value);
}

function defaultLevel(): LogLevel {
  const fromEnv = process.env['ERPGUARD_LOG_LEVEL'];
  return isLogLevel(fromEnv) ? fromEnv : 'info';
}

function stderrSink(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Errors become plain objects (JSON.stringify would print `{}`); the stack only at debug level. */
function serializeError(error: Error, withStack: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { name: error.name, message: error.message };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') out['code'] = code;
  if (withStack && error.stack !== undefined) out['stack'] = error.stack;
  if (error.cause instanceof Error) out['cause'] = serializeError(error.cause, withStack);
  return out;
}

function toJsonLine(record: Record<string, unknown>, withStack: boolean): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(record, function (this: unknown, key: string, value: unknown) {
    // JSON.stringify applies toJSON before the replacer; look at the original for Buffers.
    const original = (this as Record<string, unknown>)[key];
    if (Buffer.isBuffer(original)) return `<${original.length} bytes>`;
    if (typeof value === 'bigint') return value.toString();
    if (value instanceof Error) return serializeError(value, withStack);
    if (typeof value === 'object' && value !== null) {
      if (seen.has(value)) return '[Circular]';
      seen.add(value);
    }
    return value;
  });
}

class JsonLogger implements Logger {
  constructor(
    readonly level: LogLevel,
    private readonly component: string,
    private readonly fields: LogFields,
    private readonly sink: (line: string) => void,
    private readonly clock: () => number,
  ) {}

  isLevelEnabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return RANK[level] >= RANK[this.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  child(fields: LogFields): Logger {
    return new JsonLogger(
      this.level,
      this.component,
      { ...this.fields, ...fields },
      this.sink,
      this.clock,
    );
  }

  private write(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void {
    if (!this.isLevelEnabled(level)) return;
    const record: Record<string, unknown> = {
      time: new Date(this.clock()).toISOString(),
      level,
      component: this.component,
      msg,
    };
    // Reserved keys cannot be overwritten by fields: a field named `msg` is kept as `_msg`.
    for (const source of [this.fields, fields ?? {}]) {
      for (const [key, value] of Object.entries(source)) {
        if (value === undefined) continue;
        record[RESERVED.has(key) ? `_${key}` : key] = value;
      }
    }
    try {
      this.sink(toJsonLine(record, this.level === 'debug'));
    } catch {
      // Logging must never take the process down (closed stderr, sink bug): drop the line.
    }
  }
}

/** A logger for one component (`ca`, `identity-server`, `sidecar`, ...). */
export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  return new JsonLogger(
    options.level ?? defaultLevel(),
    component,
    options.fields ?? {},
    options.sink ?? stderrSink,
    options.clock ?? Date.now,
  );
}

/** A logger that drops everything (tests, benchmarks). */
export function silentLogger(): Logger {
  return createLogger('silent', { level: 'silent', sink: () => undefined });
}
