/**
 * Go-style durations (`90s`, `30m`, `1h30m`, `1.5h`), the format Kubernetes users know from
 * cert-manager and kubelet flags. Parsed to whole milliseconds.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION = /^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$/;
const PART = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g;

/** Milliseconds, or undefined when `text` is not a duration. `0s` parses to 0. */
export function parseDuration(text: string): number | undefined {
  if (text.length > 64 || !DURATION.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(PART)) {
    const value = Number(match[1]);
    const unit = UNIT_MS[match[2] ?? ''];
    if (unit === undefined || !Number.isFinite(value)) return undefined;
    total += value * unit;
  }
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

/** Canonical form used in the spec hash: whole seconds with `s` (`1h` and `60m` both give `3600s`). */
export function canonicalDuration(text: string): string {
  const ms = parseDuration(text);
  if (ms === undefined) return text;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** `3600000` → `1h`, `5400000` → `1h30m`, for messages. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  rest -= minutes * 60;
  if (hours) parts.push(`${hours}h`);
  if (minutes) parts.push(`${minutes}m`);
  if (rest || parts.length === 0) parts.push(`${rest}s`);
  return parts.join('');
}
