/** Go-style durations as used in the policy spec (`certificateTTL: 90m`, `1h30m`). */

const PART = /(\d+(?:\.\d+)?)(h|ms|m|s)/y;
const UNIT_SECONDS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };

/** Seconds, or null if `text` is not a positive duration made of h / m / s / ms parts. */
export function parseDurationSeconds(text: string): number | null {
  if (text.length === 0 || text.length > 64) return null;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const match = PART.exec(text);
    if (match === null || match.index !== start) return null;
    total += Number(match[1]) * (UNIT_SECONDS[match[2] ?? ''] ?? Number.NaN);
  }
  return Number.isFinite(total) && total > 0 ? total : null;
}
