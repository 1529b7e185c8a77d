/** What a CLI command may touch: output streams, the clock and the environment. Tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  now: () => Date;
  env: Readonly<Record<string, string | undefined>>;
}

/** Exit codes: documented in docs/cli.md. */
export const ExitCode = {
  Ok: 0,
  /** Lint or verification found errors, or some input was invalid. */
  Findings: 1,
  /** Usage error: unknown command or flag, missing argument. */
  Usage: 2,
  /** `check`: the call is denied. */
  Denied: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A fixed-width table; the last column is never padded. */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
