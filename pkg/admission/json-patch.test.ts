import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

import {
  PatchBuilder,
  encodePatch,
  escapePointerToken,
  toPointer,
  unescapePointerToken,
} from './json-patch.js';

const { applyPatch } = fastJsonPatch;
type Json = Record<string, unknown>;

function applyStrict(doc: Json, b: PatchBuilder): Json {
  return applyPatch(structuredClone(doc), structuredClone(b.operations) as Operation[], true, false)
    .newDocument;
}

describe('RFC 6901 escaping', () => {
  it.each([
    ['erpguard.io/injected', 'erpguard.io~1injected'],
    ['a~b', 'a~0b'],
    ['~1', '~01'], // `~` first, or `~1` would come back as `/`
    ['/~/', '~1~0~1'],
    ['', ''],
  ])('%j → %j', (raw, escaped) => {
    expect(escapePointerToken(raw)).toBe(escaped);
    expect(unescapePointerToken(escaped)).toBe(raw);
  });

  it('round-trips any string', () => {
    fc.assert(fc.property(fc.string(), (s) => unescapePointerToken(escapePointerToken(s)) === s));
  });

  it('builds pointers with numeric indexes', () => {
    expect(toPointer(['spec', 'containers', 0, 'env'])).toBe('/spec/containers/0/env');
    expect(toPointer([])).toBe('');
  });
});

describe('PatchBuilder', () => {
  it('creates missing maps and arrays and never replaces existing ones', () => {
    const doc: Json = { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'x' }] } };
    const b = new PatchBuilder(doc);
    b.addKeyIfAbsent(['metadata', 'annotations'], 'k/1', 'v');
    b.addKeyIfAbsent(['metadata', 'labels'], 'a', 'CHANGED');
    b.insert(['spec', 'initContainers'], 0, { name: 'first' });
    b.insert(['spec', 'initContainers'], 0, { name: 'zeroth' });
    b.append(['spec', 'containers', 0, 'env'], { name: 'E' });
    b.append(['spec', 'containers'], { name: 'y' });
    const out = applyStrict(doc, b);
    expect(out).toEqual({
      metadata: { labels: { a: 'b' }, annotations: { 'k/1': 'v' } },
      spec: {
        containers: [{ name: 'x', env: [{ name: 'E' }] }, { name: 'y' }],
        initContainers: [{ name: 'zeroth' }, { name: 'first' }],
      },
    });
    expect(b.document).toEqual(out);
    expect(doc).toEqual({
      metadata: { labels: { a: 'b' } },
      spec: { containers: [{ name: 'x' }] },
    });
    expect(b.operations.map((o) => o.path)).toEqual([
      '/metadata/annotations',
      '/spec/initContainers',
      '/spec/initContainers/0',
      '/spec/containers/0/env',
      '/spec/containers/-',
    ]);
  });

  it('sets and removes scalar keys', () => {
    const doc: Json = { metadata: { annotations: { 'x/y': '1', keep: '2' } } };
    const b = new PatchBuilder(doc);
    expect(b.setKey(['metadata', 'annotations'], 'x/y', '3')).toBe(true);
    expect(b.setKey(['metadata', 'annotations'], 'keep', '2')).toBe(false);
    expect(b.removeKey(['metadata', 'annotations'], 'keep')).toBe(true);
    expect(b.removeKey(['metadata', 'annotations'], 'absent')).toBe(false);
    expect(applyStrict(doc, b)).toEqual({ metadata: { annotations: { 'x/y': '3' } } });
  });

  it.each([
    ['a string where a map is needed', { metadata: 'oops' }, ['metadata', 'annotations']],
    ['a list where a map is needed', { metadata: [] }, ['metadata', 'annotations']],
    ['null on the way', { metadata: null }, ['metadata', 'annotations']],
  ])('refuses to replace %s', (_n, doc, path) => {
    const b = new PatchBuilder(doc);
    expect(() => b.addKeyIfAbsent(path, 'k', 'v')).toThrow(
      expect.objectContaining({ code: 'InvalidDocument' }),
    );
  });

  it('never writes undefined', () => {
    const b = new PatchBuilder({});
    expect(() => b.addKeyIfAbsent(['m'], 'k', { nested: undefined })).toThrow(/undefined/);
  });

  it('keeps __proto__ a plain key', () => {
    const doc = JSON.parse('{"metadata":{"annotations":{}}}') as Json;
    const b = new PatchBuilder(doc);
    b.addKeyIfAbsent(['metadata', 'annotations'], '__proto__', 'x');
    const ann = (b.document['metadata'] as Json)['annotations'] as Json;
    expect(Object.getOwnPropertyDescriptor(ann, '__proto__')?.value).toBe('x');
    expect(typeof Object.getPrototypeOf(ann)).toBe('object');
    expect(Object.keys((b.document['metadata'] as Json)['annotations'] as Json)).toEqual([
      '__proto__',
    ]);
  });

  it('encodes the patch as base64 JSON', () => {
    const b = new PatchBuilder({});
    b.addKeyIfAbsent(['a'], 'b', 'c');
    expect(JSON.parse(Buffer.from(encodePatch(b.operations), 'base64').toString('utf8'))).toEqual([
      { op: 'add', path: '/a', value: { b: 'c' } },
    ]);
  });

  it('agrees with a strict RFC 6902 implementation on arbitrary keys and shapes', () => {
    const key = fc.string({ minLength: 0, maxLength: 8 }).filter((k) => k !== '__proto__');
    const map = fc.dictionary(key, fc.string({ maxLength: 4 }), { maxKeys: 4 });
    fc.assert(
      fc.property(
        fc.record({
          labels: fc.option(map, { nil: undefined }),
          annotations: fc.option(map, { nil: undefined }),
        }),
        fc.array(
          fc.tuple(fc.constantFrom('labels', 'annotations'), key, fc.string({ maxLength: 4 })),
          { maxLength: 6 },
        ),
        fc.array(fc.nat(5), { maxLength: 4 }),
        (meta, adds, inserts) => {
          const metadata: Json = {};
          if (meta.labels !== undefined) metadata['labels'] = meta.labels;
          if (meta.annotations !== undefined) metadata['annotations'] = meta.annotations;
          const doc: Json = { metadata, spec: {} };
          const b = new PatchBuilder(doc);
          for (const [m, k, v] of adds) b.addKeyIfAbsent(['metadata', m], k, v);
          for (const i of inserts) {
            const len = (b.get(['spec', 'list']) as unknown[] | undefined)?.length ?? 0;
            b.insert(['spec', 'list'], Math.min(i, len), i);
          }
          const out = applyStrict(doc, b);
          expect(out).toEqual(b.document);
          // Existing entries are never changed.
          for (const m of ['labels', 'annotations'] as const) {
            for (const [k, v] of Object.entries((metadata[m] as Json | undefined) ?? {})) {
              expect(((out['metadata'] as Json)[m] as Json)[k]).toBe(v);
            }
          }
        },
      ),
    );
  });
});
