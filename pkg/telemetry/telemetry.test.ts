import { describe, expect, it } from '@jest/globals';

import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { createLogger, isLogLevel, type LoggerOptions } from './logger.js';
import { counter, createMetricsRegistry, gauge, histogram } from './metrics.js';

function capture(options: LoggerOptions = {}): {
  lines: () => Record<string, unknown>[];
  raw: string[];
  logger: ReturnType<typeof createLogger>;
} {
  const raw: string[] = [];
  const logger = createLogger('ca', {
    clock: () => Date.parse('2027-01-01T00:00:00Z'),
    sink: (l) => raw.push(l),
    ...options,
  });
  return { raw, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>), logger };
}

describe('createLogger', () => {
  it('writes one JSON object per line with time, level, component, message and fields', () => {
    const { logger, lines, raw } = capture({ level: 'info' });
    logger.info('certificate issued', { spiffeId: 'spiffe://x/ns/a/sa/b', serial: 'ab' });
    expect(raw[0]).not.toContain('\n');
    expect(lines()).toEqual([
      {
        time: '2027-01-01T00:00:00.000Z',
        level: 'info',
        component: 'ca',
        msg: 'certificate issued',
        spiffeId: 'spiffe://x/ns/a/sa/b',
        serial: 'ab',
      },
    ]);
  });

  it('filters by level', () => {
    const { logger, lines } = capture({ level: 'warn' });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(lines().map((l) => l['level'])).toEqual(['warn', 'error']);
    expect(logger.isLevelEnabled('info')).toBe(false);
  });

  it('child loggers add fields; reserved keys cannot be overwritten', () => {
    const { logger, lines } = capture({ level: 'info' });
    logger
      .child({ module: 'finance' })
      .child({ stream: 3 })
      .info('opened', { msg: 'spoof', level: 'error' });
    expect(lines()[0]).toMatchObject({
      level: 'info',
      msg: 'opened',
      module: 'finance',
      stream: 3,
      _msg: 'spoof',
      _level: 'error',
    });
  });

  it('serialises errors, bigints, buffers and cycles without throwing', () => {
    const { logger, lines } = capture({ level: 'info' });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic['self'] = cyclic;
    logger.error('failed', {
      err: new ErpguardError(ErrorCode.InvalidCsr, 'bad', { cause: new Error('root cause') }),
      big: 10n ** 20n,
      buf: Buffer.alloc(3),
      cyclic,
      nothing: undefined,
    });
    expect(lines()[0]).toMatchObject({
      err: {
        name: 'ErpguardError',
        message: 'bad',
        code: 'InvalidCsr',
        cause: { name: 'Error', message: 'root cause' },
      },
      big: '100000000000000000000',
      buf: '<3 bytes>',
      cyclic: { a: 1, self: '[Circular]' },
    });
    expect(lines()[0]).not.toHaveProperty('nothing');
    expect((lines()[0]?.['err'] as Record<string, unknown>)['stack']).toBeUndefined();
  });

  it('survives a failing sink', () => {
    const logger = createLogger('x', {
      sink: () => {
        throw new Error('EPIPE');
      },
    });
    expect(() => logger.error('still fine')).not.toThrow();
  });

  it('recognises levels', () => {
    expect(['debug', 'info', 'warn', 'error', 'silent', 'trace', 1].map(isLogLevel)).toEqual([
      true,
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
  });
});

describe('metrics helpers', () => {
  it('get-or-create keeps one series per name in a registry and refuses a type clash', async () => {
    const registry = createMetricsRegistry({ defaultLabels: { component: 'test' } });
    const a = counter(registry, { name: 'erpguard_test_total', help: 'h', labelNames: ['r'] });
    const b = counter(registry, { name: 'erpguard_test_total', help: 'h', labelNames: ['r'] });
    expect(b).toBe(a);
    a.inc({ r: 'x' });
    b.inc({ r: 'x' });
    gauge(registry, { name: 'erpguard_test_gauge', help: 'h' }).set(5);
    histogram(registry, { name: 'erpguard_test_seconds', help: 'h', buckets: [1] }).observe(0.5);
    const text = await registry.metrics();
    expect(text).toContain('erpguard_test_total{r="x",component="test"} 2');
    expect(text).toContain('erpguard_test_gauge{component="test"} 5');
    expect(() => gauge(registry, { name: 'erpguard_test_total', help: 'h' })).toThrow(
      'another type',
    );
    // Separate registries do not share state.
    expect(await createMetricsRegistry().metrics()).not.toContain('erpguard_test_total');
  });
});
