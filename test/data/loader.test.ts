// The batcher: batch sizes, dropLast, epochs, per-epoch seeded shuffles, and exact resume from a saved
// state (in memory and streamed, mid-epoch and across an epoch boundary).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DataLoader, batches, datasetFromRows, loadDataset, type Dataset, type LoaderState } from '../../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-loader-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const rows = Array.from({ length: 23 }, (_, i) => ({ prompt: `p${i}`, i }));
const ids = (b: { i?: unknown }[]): number[] => b.map((r) => r.i as number);
async function collect(loader: DataLoader, max = Infinity): Promise<number[][]> {
  const out: number[][] = [];
  for await (const b of loader) {
    out.push(ids(b));
    if (out.length >= max) break;
  }
  return out;
}
async function streamed(): Promise<Dataset> {
  const file = path.join(dir, 'rows.jsonl');
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n'));
  return loadDataset(file);
}

describe('batches', () => {
  test('in order, last partial batch kept or dropped, several epochs', async () => {
    const ds = datasetFromRows(rows);
    const b = await collect(batches(ds, { batchSize: 5 }));
    expect(b.map((x) => x.length)).toEqual([5, 5, 5, 5, 3]);
    expect(b.flat()).toEqual(rows.map((r) => r.i));
    const d = await collect(batches(ds, { batchSize: 5, dropLast: true }));
    expect(d.map((x) => x.length)).toEqual([5, 5, 5, 5]);
    expect(batches(ds, { batchSize: 5, dropLast: true }).batchesPerEpoch).toBe(4);
    expect(batches(ds, { batchSize: 5 }).batchesPerEpoch).toBe(5);
    const e = batches(ds, { batchSize: 10, epochs: 3 });
    expect((await collect(e)).map((x) => x.length)).toEqual([10, 10, 3, 10, 10, 3, 10, 10, 3]);
    expect(e.state()).toMatchObject({ epoch: 3, index: 0 });
    expect(await collect(e)).toEqual([]); // finished
  });

  test('shuffle: each epoch a seeded permutation, different per epoch and per seed, same for the same seed', async () => {
    const ds = datasetFromRows(rows);
    const a = await collect(batches(ds, { batchSize: 23, shuffle: true, seed: 1, epochs: 2 }));
    expect(a.length).toBe(2);
    for (const epoch of a) expect([...epoch].sort((x, y) => x - y)).toEqual(rows.map((r) => r.i));
    expect(a[0]).not.toEqual(a[1]);
    expect(a[0]).not.toEqual(rows.map((r) => r.i));
    expect(await collect(batches(ds, { batchSize: 23, shuffle: true, seed: 1, epochs: 2 }))).toEqual(a);
    expect((await collect(batches(ds, { batchSize: 23, shuffle: true, seed: 2 })))[0]).not.toEqual(a[0]);
    // Streamed data: buffer shuffle, also deterministic.
    const st = await streamed();
    const s = await collect(batches(st, { batchSize: 23, shuffle: true, seed: 1, shuffleBufferSize: 8 }));
    expect([...s[0]].sort((x, y) => x - y)).toEqual(rows.map((r) => r.i));
    expect(await collect(batches(st, { batchSize: 23, shuffle: true, seed: 1, shuffleBufferSize: 8 }))).toEqual(s);
  });

  for (const kind of ['in memory', 'streamed'] as const) {
    test(`resume from state() gives the same following batches (${kind})`, async () => {
      const ds = kind === 'in memory' ? datasetFromRows(rows) : await streamed();
      const opts = { batchSize: 4, shuffle: true, seed: 11, epochs: 3, dropLast: false, shuffleBufferSize: 6 };
      const full = await collect(batches(ds, opts));
      expect(full.length).toBe(18);
      for (const stopAfter of [1, 5, 6, 7, 12]) {
        const first = batches(ds, opts);
        const head = await collect(first, stopAfter);
        expect(head).toEqual(full.slice(0, stopAfter));
        const saved = JSON.parse(JSON.stringify(first.state())) as LoaderState;
        const resumed = DataLoader.fromState(ds, saved);
        expect(resumed.epoch).toBe(saved.epoch);
        expect(await collect(resumed)).toEqual(full.slice(stopAfter));
      }
    });
  }

  test('state reports the position after each handed-out batch', async () => {
    const loader = batches(datasetFromRows(rows), { batchSize: 10, epochs: 2 });
    const seen: [number, number][] = [];
    for await (const _ of loader) seen.push([loader.state().epoch, loader.state().index]);
    expect(seen).toEqual([[0, 10], [0, 20], [0, 23], [1, 10], [1, 20], [1, 23]]);
    expect(loader.state()).toEqual({
      version: 1, epoch: 2, index: 0, batchSize: 10, shuffle: false, seed: 42, dropLast: false, epochs: 2,
      shuffleBufferSize: 1000, datasetSize: 23,
    });
  });

  test('bad options, mismatched resume state and concurrent iteration are errors', async () => {
    const ds = datasetFromRows(rows);
    expect(() => batches(ds, { batchSize: 0 })).toThrow(/'batchSize' must be an integer ≥ 1, got 0/);
    expect(() => batches(ds, { batchSize: 2, shuffel: true } as object as { batchSize: number })).toThrow(/unknown option 'shuffel'/);
    expect(() => batches(rows as never, { batchSize: 2 })).toThrow(/must be a Dataset/);
    const state = batches(ds, { batchSize: 2 }).state();
    expect(() => DataLoader.fromState(datasetFromRows(rows.slice(1)), state)).toThrow(/saved for a dataset of 23 rows, but this one has 22/);
    expect(() => DataLoader.fromState(ds, { ...state, version: 2 } as never)).toThrow(/not a loader state/);
    expect(() => DataLoader.fromState(ds, { ...state, index: 99 })).toThrow(/index 99 is past/);
    const loader = batches(ds, { batchSize: 2, epochs: Infinity });
    expect(loader.state().epochs).toBeNull();
    const it = loader[Symbol.asyncIterator]();
    await it.next();
    await expect(collect(loader)).rejects.toThrow(/already being iterated/);
    await it.return(undefined);
    expect((await collect(loader, 1))[0].length).toBe(2);
  });
});
