import { describe, expect, it } from '@jest/globals';
import { canonicalDuration, formatDuration, parseDuration } from './duration.js';

describe('durations', () => {
  it.each([
    ['1h', 3_600_000],
    ['90m', 5_400_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['45s', 45_000],
    ['250ms', 250],
    ['0s', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '1', 'h', '1d', '-1h', '1h ', 'forever', '1e3s', '9'.repeat(70) + 's'])(
    'rejects %p',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );

  it('canonicalises and formats', () => {
    expect(canonicalDuration('60m')).toBe('3600s');
    expect(canonicalDuration('1500ms')).toBe('1500ms');
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(0)).toBe('0s');
  });
});
