// Datasets: every format from JSONL files, .json files, folders and arrays; auto-detection; streaming
// a 50,000-line file; malformed rows (errors naming file:line, or skipped and counted); deterministic
// shuffles; train/test splits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import { DatasetError, datasetFromRows, loadDataset, rowSource, type Dataset, type Row } from '../../src/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-data-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let fileNo = 0;
function jsonl(rows: unknown[], name = `f${fileNo++}.jsonl`): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return file;
}
function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}
async function errorOf(p: Promise<unknown>): Promise<DatasetError> {
  try {
    await p;
  } catch (e) {
    return e as DatasetError;
  }
  throw new Error('expected an error');
}

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

const FORMATS: { name: string; rows: Row[]; format: string; conversational: boolean }[] = [
  { name: 'text', rows: [{ text: 'hello' }, { text: 'world', source: 'x' }], format: 'text', conversational: false },
  { name: 'prompt-only', rows: [{ prompt: '1+1=', answer: '2' }, { prompt: '2+2=', answer: '4' }], format: 'prompt', conversational: false },
  { name: 'prompt+completion', rows: [{ prompt: 'a', completion: 'b' }, { prompt: 'c', completion: 'd', id: 7 }], format: 'prompt_completion', conversational: false },
  { name: 'preference', rows: [{ prompt: 'q', chosen: 'good', rejected: 'bad', margin: 0.5 }, { prompt: 'q2', chosen: 'yes', rejected: 'no' }], format: 'preference', conversational: false },
  { name: 'messages', rows: [{ messages: [user('hi'), assistant('hello')] }, { messages: [user('yo')] }], format: 'conversational', conversational: true },
  { name: 'conversational prompt-only', rows: [{ prompt: [user('2+2?')], answer: '4' }], format: 'prompt', conversational: true },
  { name: 'conversational prompt+completion', rows: [{ prompt: [user('2+2?')], completion: [assistant('4')] }], format: 'prompt_completion', conversational: true },
  { name: 'conversational preference', rows: [{ prompt: [user('2+2?')], chosen: [assistant('4')], rejected: [assistant('5')] }], format: 'preference', conversational: true },
];

describe('formats', () => {
  for (const f of FORMATS) {
    test(`${f.name}: detected from a JSONL file and from an array, rows and extra columns kept`, async () => {
      const file = jsonl(f.rows);
      const streamed = await loadDataset(file);
      expect(streamed.format).toBe(f.format);
      expect(streamed.conversational).toBe(f.conversational);
      expect(streamed.streamed).toBe(true);
      expect(streamed.size).toBeUndefined();
      expect(await streamed.toArray()).toEqual(f.rows);
      const mem = await loadDataset(f.rows);
      expect(mem.format).toBe(f.format);
      expect(mem.conversational).toBe(f.conversational);
      expect(mem.size).toBe(f.rows.length);
      expect(await mem.toArray()).toEqual(f.rows);
      // Explicit format agrees.
      expect((await loadDataset(file, { format: f.format as 'text' })).format).toBe(f.format);
    });
  }

  test('rows remember where they came from (file:line), invisibly', async () => {
    const file = jsonl([{ prompt: 'a' }, '', { prompt: 'b' }]);
    const rows = await (await loadDataset(file)).toArray();
    expect(rows.map(rowSource)).toEqual([`${file}:1`, `${file}:3`]);
    expect(Object.keys(rows[0])).toEqual(['prompt']);
    expect(JSON.stringify(rows[0])).toBe('{"prompt":"a"}');
    expect(rowSource(datasetFromRows([{ prompt: 'x' }]).rowsInMemory![0])).toBe('rows[0]');
  });

  test('an explicit format keeps other fields as extra columns', async () => {
    const ds = await loadDataset([{ prompt: 'p', completion: 'c' }], { format: 'prompt' });
    expect(ds.format).toBe('prompt');
    expect(await ds.toArray()).toEqual([{ prompt: 'p', completion: 'c' }]);
  });

  test('implicit-prompt preference pairs get the shared prefix as prompt (TRL extract_prompt)', async () => {
    const ds = await loadDataset([
      { chosen: 'The sky is blue.', rejected: 'The sky is green.' },
      { chosen: [user('Q'), assistant('A')], rejected: [user('Q'), assistant('B')] },
    ].slice(0, 1));
    expect(await ds.toArray()).toEqual([{ prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }]);
    const conv = await loadDataset([{ chosen: [user('Q'), assistant('A')], rejected: [user('Q'), assistant('B')], id: 1 }]);
    expect(conv.conversational).toBe(true);
    expect(await conv.toArray()).toEqual([{ prompt: [user('Q')], chosen: [assistant('A')], rejected: [assistant('B')], id: 1 }]);
    await expect(loadDataset([{ chosen: [assistant('A')], rejected: [assistant('B')] }])).rejects.toThrow(/rows\[0\]: no prompt field, and chosen and rejected share no leading messages/);
  });

  test('unknown columns cannot be detected: the error lists the fields and how to fix', async () => {
    const file = jsonl([{ question: 'q', answer: 'a' }]);
    await expect(loadDataset(file)).rejects.toThrow(`${file}:1: cannot tell the dataset format from this row (fields: question, answer)`);
    await expect(loadDataset([{ question: 'q' }])).rejects.toThrow(/pass \{ format \}/);
    await expect(loadDataset(file, { format: 'preference' })).rejects.toThrow(`${file}:1: missing field 'chosen' (preference rows need prompt, chosen, rejected)`);
    await expect(loadDataset(file, { format: 'bogus' as 'text' })).rejects.toThrow(/'format' must be 'auto' or one of/);
    await expect(loadDataset(file, { shuffle: true } as object)).rejects.toThrow(/unknown option 'shuffle'/);
    await expect(loadDataset(path.join(dir, 'nope.jsonl'))).rejects.toThrow(/nope.jsonl not found/);
  });

  test('.json arrays are read whole with line numbers; .json JSON Lines are streamed; gzip works', async () => {
    const arr = write('arr.json', '[\n  {"prompt": "a"},\n  {"prompt": "b",\n   "x": [1, {"y": "]"}]},\n  {"nope": 1}\n]\n');
    await expect(loadDataset(arr)).rejects.toThrow(`${arr}:5: missing field 'prompt' (prompt-only rows need prompt)`);
    const ok = write('ok.json', JSON.stringify([{ prompt: 'a' }, { prompt: 'b' }], null, 2));
    const ds = await loadDataset(ok);
    expect(ds.streamed).toBe(false);
    expect(ds.size).toBe(2);
    const lines = write('lines.json', '{"prompt": "a"}\n{"prompt": "b"}\n');
    const ls = await loadDataset(lines);
    expect(ls.streamed).toBe(true);
    expect((await ls.toArray()).length).toBe(2);
    const gz = path.join(dir, 'data.jsonl.gz');
    fs.writeFileSync(gz, zlib.gzipSync('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}\n'));
    expect((await (await loadDataset(gz)).toArray()).map((r) => r.prompt)).toEqual(['a', 'b', 'c']);
    const bad = write('bad.json', '[\n {"prompt": "a"},\n {"prompt": "b",}\n]');
    await expect(loadDataset(bad)).rejects.toThrow(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: invalid JSON`));
  });

  test('splits: a JSON object of splits, a folder of split files and shards', async () => {
    const obj = write('splits.json', JSON.stringify({ train: [{ prompt: 'a' }, { prompt: 'b' }], test: [{ prompt: 'c' }] }, null, 1));
    expect((await (await loadDataset(obj)).toArray()).map((r) => r.prompt)).toEqual(['a', 'b']);
    expect((await (await loadDataset(obj, { split: 'test' })).toArray()).map((r) => r.prompt)).toEqual(['c']);
    await expect(loadDataset(obj, { split: 'validation' })).rejects.toThrow(/no split 'validation' in this JSON object \(it has: train, test\)/);
    const objBad = write('splits2.json', '{\n "train": [\n  {"prompt": "a"},\n  {"prompt": 3}\n ]\n}');
    await expect(loadDataset(objBad)).rejects.toThrow(`${objBad}:4: field 'prompt' must be a string (this dataset is standard, not conversational, as its first row), got number`);
    const folder = path.join(dir, 'folder');
    write('folder/train-00000-of-00002.jsonl', '{"prompt": "a"}\n');
    write('folder/train-00001-of-00002.jsonl', '{"prompt": "b"}\n');
    write('folder/test.jsonl', '{"prompt": "c"}\n');
    expect((await (await loadDataset(folder)).toArray()).map((r) => r.prompt)).toEqual(['a', 'b']);
    expect((await (await loadDataset(folder, { split: 'test' })).toArray()).map((r) => r.prompt)).toEqual(['c']);
    await expect(loadDataset(folder, { split: 'eval' })).rejects.toThrow(/no 'eval' split in folder .*found splits: test, train/);
    await expect(loadDataset(jsonl([{ prompt: 'a' }]), { split: 'test' })).rejects.toThrow(/one file, which is the 'train' split/);
  });
});

describe('malformed rows', () => {
  const good = { prompt: 'p', chosen: 'c', rejected: 'r' };
  const lines = [good, good, 'not json {', good, { prompt: 'p', rejected: 'r' }, { prompt: 'p', chosen: 5, rejected: 'r' }, good, [1, 2], { prompt: 'p', chosen: 'c', rejected: 'r', margin: 'big' }, good];

  test('stop with an error naming the file, the line and what is wrong', async () => {
    const file = jsonl(lines);
    const ds = await loadDataset(file);
    const e = await errorOf(ds.toArray());
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: invalid JSON`));
    expect(e.file).toBe(file);
    expect(e.line).toBe(3);
    expect(e.kind).toBe('invalid JSON');
    const only = (i: number) => jsonl([good, lines[i]]);
    const f5 = only(4);
    await expect((await loadDataset(f5)).toArray()).rejects.toThrow(`${f5}:2: missing field 'chosen' (preference rows need prompt, chosen, rejected)`);
    const f6 = only(5);
    await expect((await loadDataset(f6)).toArray()).rejects.toThrow(`${f6}:2: field 'chosen' must be a string (this dataset is standard, not conversational, as its first row), got number`);
    const f8 = only(7);
    await expect((await loadDataset(f8)).toArray()).rejects.toThrow(`${f8}:2: expected a JSON object with the row's fields, got array`);
    const f9 = only(8);
    await expect((await loadDataset(f9)).toArray()).rejects.toThrow(`${f9}:2: field 'margin' must be a finite number, got string`);
    const conv = jsonl([{ prompt: [user('q')] }, { prompt: [{ role: 'user' }] }, { prompt: 'text' }]);
    await expect((await loadDataset(conv)).toArray()).rejects.toThrow(`${conv}:2: field 'prompt'[0]: 'content' must be a string, got undefined`);
    await expect(loadDataset([good, { prompt: 'p' }])).rejects.toThrow("rows[1]: missing field 'chosen'");
    const sys = jsonl([{ prompt: [user('q'), { role: 'system', content: 's' }] }]);
    await expect(loadDataset(sys)).rejects.toThrow(/ends with a 'system' message; a prompt must end with a user message/);
  });

  test('skipMalformed: skipped and counted once, with reasons', async () => {
    const file = jsonl(lines);
    const ds = await loadDataset(file, { skipMalformed: true });
    expect((await ds.toArray()).length).toBe(5);
    expect(ds.skipped.count).toBe(5);
    expect(ds.skipped.byReason).toEqual({
      'invalid JSON': 1, "missing field 'chosen'": 1, "wrong type for 'chosen'": 1, 'not an object': 1, "wrong type for 'margin'": 1,
    });
    expect(ds.skipped.examples.map((x) => x.where)).toEqual([3, 5, 6, 8, 9].map((l) => `${file}:${l}`));
    // A second pass (and derived datasets) do not count the same lines again.
    expect((await ds.shuffle(1).toArray()).length).toBe(5);
    expect(ds.skipped.count).toBe(5);
    // Arrays too; a malformed first row does not decide the format.
    const mem = await loadDataset(['oops', { prompt: 'a' }, { text: 'b' }], { skipMalformed: true });
    expect(mem.format).toBe('prompt');
    expect(mem.size).toBe(1);
    expect(mem.skipped.toJSON()).toEqual({ count: 2, byReason: { 'not an object': 1, "missing field 'prompt'": 1 }, examples: [
      { where: 'rows[0]', reason: 'expected a JSON object with the row\'s fields, got string' },
      { where: 'rows[2]', reason: "missing field 'prompt' (prompt-only rows need prompt)" },
    ] });
    const firstBad = await loadDataset(jsonl(['{', { prompt: 'a' }]), { skipMalformed: true });
    expect(firstBad.format).toBe('prompt');
    expect(await firstBad.toArray()).toEqual([{ prompt: 'a' }]);
    expect(firstBad.skipped.count).toBe(1);
  });
});

describe('streaming', () => {
  test('a 50,000-line file is read row by row, never held whole', async () => {
    const file = path.join(dir, 'big.jsonl');
    const fd = fs.openSync(file, 'w');
    const N = 50_000;
    let chunk = '';
    for (let i = 0; i < N; i++) {
      chunk += JSON.stringify({ prompt: `question ${i}: ${'x'.repeat(100)}`, answer: String(i) }) + '\n';
      if (chunk.length > 1 << 20) { fs.writeSync(fd, chunk); chunk = ''; }
    }
    fs.writeSync(fd, chunk);
    fs.closeSync(fd);
    const ds = await loadDataset(file);
    expect(ds.streamed).toBe(true);
    expect(ds.rowsInMemory).toBeUndefined();
    let n = 0;
    let sum = 0;
    for await (const row of ds) {
      n++;
      sum += Number(row.answer);
    }
    expect(n).toBe(N);
    expect(sum).toBe((N * (N - 1)) / 2);
    // Early exits close the file; take/skip are lazy.
    expect((await ds.take(3).toArray()).map((r) => r.answer)).toEqual(['0', '1', '2']);
    expect((await ds.skip(N - 2).toArray()).map((r) => r.answer)).toEqual([String(N - 2), String(N - 1)]);
    // A buffer shuffle over the stream is a deterministic permutation.
    const a: string[] = [];
    for await (const r of ds.shuffle(3, { bufferSize: 100 })) a.push(r.answer as string);
    expect(a.length).toBe(N);
    expect(new Set(a).size).toBe(N);
    expect(a.slice(0, 50)).not.toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
    expect((await ds.shuffle(3, { bufferSize: 100 }).take(20).toArray()).map((r) => r.answer)).toEqual(a.slice(0, 20));
  });
});

describe('shuffle, take, filter, map, split', () => {
  const rows = Array.from({ length: 100 }, (_, i) => ({ prompt: `p${i}`, i }));
  const ids = async (ds: Dataset): Promise<number[]> => (await ds.toArray()).map((r) => r.i as number);

  test('shuffle is deterministic per seed, a permutation, different across seeds', async () => {
    const ds = datasetFromRows(rows);
    const a = await ids(ds.shuffle(7));
    expect(await ids(ds.shuffle(7))).toEqual(a);
    expect(await ids(ds.shuffle(8))).not.toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual(rows.map((r) => r.i));
    expect(a).not.toEqual(rows.map((r) => r.i));
    expect(await ids(ds)).toEqual(rows.map((r) => r.i)); // the original is untouched
    const streamed = await loadDataset(jsonl(rows));
    const s = await ids(streamed.shuffle(7, { bufferSize: 10 }));
    expect(await ids(streamed.shuffle(7, { bufferSize: 10 }))).toEqual(s);
    expect(await ids(streamed.shuffle(9, { bufferSize: 10 }))).not.toEqual(s);
    expect([...s].sort((x, y) => x - y)).toEqual(rows.map((r) => r.i));
    expect(() => ds.shuffle(1.5)).toThrow(/'seed' must be an integer/);
  });

  test('take, skip, filter, map', async () => {
    const ds = datasetFromRows(rows);
    expect(await ids(ds.take(3))).toEqual([0, 1, 2]);
    expect(ds.take(3).size).toBe(3);
    expect(await ids(ds.skip(97))).toEqual([97, 98, 99]);
    expect(await ids(ds.filter((r) => (r.i as number) % 50 === 0))).toEqual([0, 50]);
    expect((await ds.map((r) => ({ ...r, j: (r.i as number) * 2 })).take(2).toArray()).map((r) => r.j)).toEqual([0, 2]);
    const st = await loadDataset(jsonl(rows));
    expect(await ids(st.filter((r) => (r.i as number) > 97))).toEqual([98, 99]);
    expect(await ids(st.take(0))).toEqual([]);
    expect(() => ds.take(-1)).toThrow(/expected an integer ≥ 0/);
    expect((await st.load()).size).toBe(100);
  });

  test('trainTestSplit: sizes, disjoint, complete, deterministic (in memory and streamed)', async () => {
    for (const ds of [datasetFromRows(rows), await loadDataset(jsonl(rows))]) {
      const { train, test: evalSet } = await ds.trainTestSplit({ testSize: 0.15, seed: 3 });
      expect(evalSet.size).toBe(15);
      expect(train.size).toBe(85);
      const tr = await ids(train);
      const te = await ids(evalSet);
      expect(tr.length).toBe(85);
      expect(te.length).toBe(15);
      expect(new Set([...tr, ...te]).size).toBe(100);
      const again = await ds.trainTestSplit({ testSize: 0.15, seed: 3 });
      expect(new Set(await ids(again.test))).toEqual(new Set(te));
      const other = await ds.trainTestSplit({ testSize: 0.15, seed: 4 });
      expect(new Set(await ids(other.test))).not.toEqual(new Set(te));
      const counted = await ds.trainTestSplit({ testSize: 10, shuffle: false });
      expect(await ids(counted.test)).toEqual([90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
    }
    // Both splits of the streamed and in-memory datasets hold the same rows for the same seed.
    const m = await datasetFromRows(rows).trainTestSplit({ testSize: 0.2, seed: 5 });
    const s = await (await loadDataset(jsonl(rows))).trainTestSplit({ testSize: 0.2, seed: 5 });
    expect(new Set(await ids(s.test))).toEqual(new Set(await ids(m.test)));
    await expect(datasetFromRows(rows).trainTestSplit({ testSize: 1.5 })).rejects.toThrow(/'testSize' must be a fraction in \(0, 1\) or a row count/);
    await expect(datasetFromRows(rows.slice(0, 1)).trainTestSplit({ testSize: 0.5 })).rejects.toThrow(/both sets need at least one/);
  });
});

test('frozen rows are accepted (no source tag)', async () => {
  const ds = await loadDataset([Object.freeze({ prompt: 'a' })]);
  expect(await ds.toArray()).toEqual([{ prompt: 'a' }]);
});
