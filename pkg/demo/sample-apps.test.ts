import { afterAll, describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import { startSampleApp } from './sample-apps.js';
import type { RunningApp } from './sample-apps.js';

let app: RunningApp | undefined;
afterAll(async () => {
  await app?.close();
});

describe('sample apps', () => {
  it('survive a client that aborts in the middle of a body, and keep serving', async () => {
    app = await startSampleApp('finance');
    const port = app.port;
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(
          'POST /api/v1/invoices HTTP/1.1\r\nHost: finance\r\nContent-Length: 100\r\n\r\nabc',
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 50);
      });
    });
    await new Promise((r) => setTimeout(r, 100));
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/customers/1001`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { iban: string }).iban).toBe('DE89370400440532013000');
  });
});
