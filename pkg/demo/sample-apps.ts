/**
 * Sample ERP modules for the local demo: small HTTP/JSON services with realistic data. They know
 * nothing about erpguard except that they trust the `x-erpguard-*` headers their sidecar sets,
 * which they echo back so the demo can show what the callee saw.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type SampleModule = 'finance' | 'crm' | 'wms' | 'bi';

interface Route {
  method: string;
  pattern: RegExp;
  handle: (match: RegExpExecArray, body: unknown) => { status: number; body: unknown };
}

const CUSTOMERS = [
  {
    id: '1001',
    name: 'Nordwind Logistik GmbH',
    email: 'ap@nordwind-logistik.de',
    iban: 'DE89370400440532013000',
    taxId: 'DE811907980',
    balance: 18250.4,
  },
  {
    id: '1002',
    name: 'Soleil Distribution SARL',
    email: 'compta@soleil-distribution.fr',
    iban: 'FR1420041010050500013M02606',
    taxId: 'FR40303265045',
    balance: 4210.0,
  },
  {
    id: '1003',
    name: 'Baltic Timber AB',
    email: 'invoices@baltictimber.se',
    iban: 'SE4550000000058398257466',
    taxId: 'SE556036079301',
    balance: 0,
  },
];
const INVOICES = [
  {
    id: 'INV-2026-0412',
    customerId: '1001',
    amount: 12840.0,
    currency: 'EUR',
    iban: 'DE89370400440532013000',
    status: 'open',
  },
  {
    id: 'INV-2026-0413',
    customerId: '1002',
    amount: 4210.0,
    currency: 'EUR',
    iban: 'FR1420041010050500013M02606',
    status: 'open',
  },
];
const STOCK: Record<
  string,
  { sku: string; description: string; onHand: number; reserved: number; location: string }
> = {
  'SKU-4711': {
    sku: 'SKU-4711',
    description: 'Pallet racking beam 2.7 m',
    onHand: 420,
    reserved: 35,
    location: 'HAM-A-03',
  },
  'SKU-0815': {
    sku: 'SKU-0815',
    description: 'Stretch film 500 mm',
    onHand: 1290,
    reserved: 0,
    location: 'HAM-C-11',
  },
};

const ok = (body: unknown, status = 200): { status: number; body: unknown } => ({ status, body });
const notFound = { status: 404, body: { error: 'NotFound' } };

const ROUTES: Record<SampleModule, Route[]> = {
  finance: [
    { method: 'GET', pattern: /^\/api\/v1\/customers$/, handle: () => ok({ items: CUSTOMERS }) },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/customers\/([^/]+)$/,
      handle: (m) => {
        const customer = CUSTOMERS.find((c) => c.id === m[1]);
        return customer ? ok(customer) : notFound;
      },
    },
    { method: 'GET', pattern: /^\/api\/v1\/invoices$/, handle: () => ok({ items: INVOICES }) },
    {
      method: 'POST',
      pattern: /^\/api\/v1\/invoices$/,
      handle: (_, body) => ok({ created: body }, 201),
    },
    {
      method: 'POST',
      pattern: /^\/api\/v1\/goods-receipts$/,
      handle: (_, body) => ok({ booked: body }, 201),
    },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/exports\/ledger$/,
      handle: () =>
        ok({
          period: '2026-11',
          entries: INVOICES.map((i) => ({ account: '1200', amount: i.amount, reference: i.id })),
        }),
    },
  ],
  crm: [
    {
      method: 'GET',
      pattern: /^\/api\/v1\/accounts\/([^/]+)\/billing-contact$/,
      handle: (m) =>
        ok({
          accountId: m[1],
          name: 'Erika Mustermann',
          phone: '+49 40 123456',
          email: 'erika@nordwind-logistik.de',
        }),
    },
  ],
  wms: [
    {
      method: 'GET',
      pattern: /^\/api\/v1\/stock\/([^/]+)$/,
      handle: (m) => {
        const item = STOCK[m[1] ?? ''];
        return item ? ok(item) : notFound;
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/v1\/stock-movements$/,
      handle: () =>
        ok({
          items: [{ sku: 'SKU-4711', quantity: -12, reason: 'pick', at: '2026-12-02T08:14:00Z' }],
        }),
    },
  ],
  bi: [
    {
      method: 'GET',
      pattern: /^\/api\/v1\/reports\/revenue$/,
      handle: () => ok({ period: '2026-11', revenue: 17050 }),
    },
  ],
};

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) return undefined;
    chunks.push(chunk as Buffer);
  }
  if (chunks.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function handler(module: SampleModule) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    // A client that aborts mid-body (or any bug here) must cost one request, never the process
    // that also hosts the controller and the sidecars in local mode.
    respond(module, req, res).catch(() => {
      if (!res.headersSent && !res.destroyed) res.writeHead(400).end();
      else res.destroy();
    });
  };
}

async function respond(
  module: SampleModule,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = await readBody(req);
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  let result: { status: number; body: unknown } = notFound;
  for (const route of ROUTES[module]) {
    const match = route.method === req.method ? route.pattern.exec(path) : null;
    if (match) {
      result = route.handle(match, body);
      break;
    }
  }
  const payload = JSON.stringify(result.body);
  res.writeHead(result.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'x-served-by': module,
    // What the sidecar told the app about the caller, so the demo can show it.
    'x-seen-caller': String(req.headers['x-erpguard-caller'] ?? ''),
    'x-seen-caller-module': String(req.headers['x-erpguard-caller-module'] ?? ''),
  });
  res.end(payload);
}

export interface RunningApp {
  module: SampleModule;
  port: number;
  close(): Promise<void>;
}

/** Starts a sample module app on 127.0.0.1 (port 0 picks a free port). */
export async function startSampleApp(module: SampleModule, port = 0): Promise<RunningApp> {
  const server: Server = createServer({ keepAliveTimeout: 30_000 }, handler(module));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    module,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
