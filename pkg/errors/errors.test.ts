import { describe, expect, it } from '@jest/globals';
import { describeError, ErpguardError, ErrorCode, isErpguardError } from './errors.js';

describe('ErpguardError', () => {
  it('carries a stable code and marks only transient codes retryable', () => {
    const unavailable = new ErpguardError(ErrorCode.Unavailable, 'API server down');
    const parse = new ErpguardError(ErrorCode.ParseError, 'bad YAML');
    expect(unavailable.retryable).toBe(true);
    expect(parse.retryable).toBe(false);
    expect(isErpguardError(parse)).toBe(true);
    expect(isErpguardError(new Error('x'))).toBe(false);
  });

  it('describes errors in one line with their code', () => {
    expect(describeError(new ErpguardError(ErrorCode.ParseError, 'bad YAML'))).toBe(
      'ParseError: bad YAML',
    );
    expect(describeError(new Error('boom'))).toBe('Internal: boom');
    expect(describeError('text')).toBe('Internal: text');
  });
});
