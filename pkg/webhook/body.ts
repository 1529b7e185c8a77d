/**
 * Reads a request body up to a limit. Over the limit the answer is 413 at once; the rest of the
 * body is drained (not buffered) by Node after the response, so the keep-alive connection the
 * API server reuses stays usable.
 */
import type { IncomingMessage } from 'node:http';

/** An UPDATE carries two objects; the API server's own request limit is 3 MiB per object. */
export const DEFAULT_BODY_LIMIT_BYTES = 8 * 1024 * 1024;

export type BodyResult =
  { ok: true; body: Buffer } | { ok: false; status: 413 | 400; message: string };

export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    if (!Number.isSafeInteger(n) || n < 0) {
      return Promise.resolve({ ok: false, status: 400, message: 'Content-Length is not a number' });
    }
    if (n > limit) {
      return Promise.resolve({
        ok: false,
        status: 413,
        message: `the body has ${n} bytes; the limit is ${limit}`,
      });
    }
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        finish({ ok: false, status: 413, message: `the body exceeds the limit of ${limit} bytes` });
        req.resume(); // drain and discard the rest
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ ok: true, body: Buffer.concat(chunks, size) });
    const onError = (e: Error): void =>
      finish({ ok: false, status: 400, message: `reading the body failed: ${e.message}` });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
