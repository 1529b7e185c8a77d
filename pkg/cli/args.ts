/** Argument parsing on node:util parseArgs, with errors that name the flag. */
import { parseArgs } from 'node:util';
import { ErpguardError, ErrorCode } from '../errors/errors.js';

export type FlagSpec = Record<
  string,
  { type: 'string' | 'boolean'; short?: string; multiple?: boolean }
>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseFlags(
  args: readonly string[],
  flags: FlagSpec,
  allowPositionals = true,
): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...flags, help: { type: 'boolean', short: 'h' }, debug: { type: 'boolean' } },
      allowPositionals,
      strict: true,
    });
    return { values, positionals };
  } catch (error: unknown) {
    const message =
      error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
    // parseArgs prefixes messages with the error class and code; users need only the sentence.
    const sentence = message
      .replace(/^TypeError \[[A-Z_]+\]: /, '')
      .replace(/\. To specify .*$/, '');
    throw new ErpguardError(ErrorCode.InvalidArgument, sentence);
  }
}

export function stringFlag(parsed: ParsedArgs, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === 'string' ? value : undefined;
}

export function requiredFlag(parsed: ParsedArgs, name: string): string {
  const value = stringFlag(parsed, name);
  if (value === undefined || value === '') {
    throw new ErpguardError(ErrorCode.InvalidArgument, `missing required flag --${name}`);
  }
  return value;
}

export function listFlag(parsed: ParsedArgs, name: string): string[] | undefined {
  const value = stringFlag(parsed, name);
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `--now` as an RFC 3339 time, default the clock. */
export function timeFlag(parsed: ParsedArgs, name: string, fallback: Date): Date {
  const value = stringFlag(parsed, name);
  if (value === undefined) return fallback;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new ErpguardError(
      ErrorCode.InvalidArgument,
      `--${name} ${JSON.stringify(value)} is not a time; use RFC 3339 like 2027-01-01T00:00:00Z`,
    );
  }
  return new Date(ms);
}

export function outputFlag(parsed: ParsedArgs): 'table' | 'json' {
  const value = stringFlag(parsed, 'output') ?? 'table';
  if (value !== 'table' && value !== 'json') {
    throw new ErpguardError(
      ErrorCode.InvalidArgument,
      `--output must be 'table' or 'json', not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
