// Reading rows from files: JSON Lines streamed line by line (node:readline over a file stream, so a
// multi-GB file is never held whole; `.gz` is gunzipped on the fly), JSON files read whole (an array
// of rows, or an object of splits `{ "train": [...], "test": [...] }`), and folders of split files.
// Each row comes with where it was (`path:line`) so errors can name it.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { DatasetError, RowProblem } from './format.js';

/** One raw row before validation. `pos` orders rows within `source` (line, or index). */
export interface RawRecord {
  source: string;
  pos: number;
  where: string;
  file?: string;
  line?: number;
  value?: unknown;
  problem?: RowProblem;
}

export type FileKind = 'jsonl' | 'json-array' | 'json-splits';

/** Yields the non-blank lines of a (possibly gzipped) text file with their 1-based line numbers. */
export async function* readLines(file: string): AsyncGenerator<{ line: number; text: string }> {
  const stream = fs.createReadStream(file);
  const input = file.endsWith('.gz') ? stream.pipe(zlib.createGunzip()) : stream;
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (let text of rl) {
      line += 1;
      if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.trim() === '') continue;
      yield { line, text };
    }
  } finally {
    rl.close();
    if (input !== stream) (input as zlib.Gunzip).destroy();
    stream.destroy();
  }
}

/** Streams a JSON Lines file as raw records (JSON parse errors become problems, not throws). */
export async function* jsonlRecords(file: string, label: string): AsyncGenerator<RawRecord> {
  for await (const { line, text } of readLines(file)) {
    const rec: RawRecord = { source: file, pos: line, where: `${label}:${line}`, file: label, line };
    try {
      rec.value = JSON.parse(text);
    } catch (e) {
      rec.problem = new RowProblem('invalid JSON', `invalid JSON: ${(e as Error).message}`);
    }
    yield rec;
  }
}

async function firstNonBlank(file: string): Promise<{ char: string; firstLine: string | null }> {
  for await (const { text } of readLines(file)) {
    const t = text.trimStart();
    return { char: t[0], firstLine: text };
  }
  return { char: '', firstLine: null };
}

const FORMAT_KEYS = ['text', 'prompt', 'completion', 'chosen', 'rejected', 'messages'];
const looksLikeSplits = (v: unknown): boolean => v !== null && typeof v === 'object' && !Array.isArray(v)
  && Object.keys(v).length > 0 && !FORMAT_KEYS.some((k) => k in (v as object)) && Object.values(v as object).every(Array.isArray);

/**
 * How a file is read. `.json`: an array when it starts with `[`; JSON Lines when its first line is a
 * whole JSON object (what `datasets.Dataset.to_json` writes); otherwise an object of splits.
 * Anything else (`.jsonl`, `.ndjson`, `.jsonl.gz`, …) is JSON Lines.
 */
export async function fileKind(file: string): Promise<FileKind> {
  const base = file.endsWith('.gz') ? file.slice(0, -3) : file;
  if (!base.endsWith('.json')) return 'jsonl';
  const { char, firstLine } = await firstNonBlank(file);
  if (char === '[') return 'json-array';
  if (firstLine === null) return 'jsonl';
  try {
    const v = JSON.parse(firstLine) as unknown;
    return looksLikeSplits(v) ? 'json-splits' : 'jsonl';
  } catch {
    return 'json-splits';
  }
}

function readText(file: string): string {
  const buf = fs.readFileSync(file);
  const text = (file.endsWith('.gz') ? zlib.gunzipSync(buf) : buf).toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

const isWs = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

/**
 * Offsets of the values of the array that starts at `start` (a `[`), for line numbers in errors.
 * Assumes valid JSON (it is called after JSON.parse succeeded).
 */
function arrayElementOffsets(text: string, start: number): number[] {
  const out: number[] = [];
  let depth = 0;
  let inStr = false;
  let esc = false;
  let expect = false;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (esc) esc = false;
      else if (c === 92) esc = true;
      else if (c === 34) inStr = false;
      continue;
    }
    if (expect && !isWs(c)) {
      if (!(depth === 1 && c === 93)) out.push(i);
      expect = false;
    }
    if (c === 34) inStr = true;
    else if (c === 91 || c === 123) {
      depth++;
      if (depth === 1) expect = true;
    } else if (c === 93 || c === 125) {
      depth--;
      if (depth === 0) break;
    } else if (c === 44 && depth === 1) expect = true;
  }
  return out;
}

/** Offset of the value of top-level key `key` in a JSON object text (valid JSON assumed), or -1. */
function topLevelValueOffset(text: string, key: string): number {
  let depth = 0;
  let i = 0;
  let expectKey = false;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 34) j += text.charCodeAt(j) === 92 ? 2 : 1;
      if (depth === 1 && expectKey) {
        const k = JSON.parse(text.slice(i, j + 1)) as string;
        let v = j + 1;
        while (isWs(text.charCodeAt(v)) || text.charCodeAt(v) === 58) v++;
        if (k === key) return v;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 123 || c === 91) { depth++; if (depth === 1) expectKey = true; }
    else if (c === 125 || c === 93) depth--;
    else if (c === 44 && depth === 1) expectKey = true;
    i++;
  }
  return -1;
}

function parseWhole(file: string, label: string): { text: string; value: unknown } {
  const text = readText(file);
  try {
    return { text, value: JSON.parse(text) };
  } catch (e) {
    const msg = (e as Error).message;
    const m = /at position (\d+)/.exec(msg);
    const line = m ? lineAt(text, Number(m[1])) : undefined;
    throw new DatasetError(line ? `${label}:${line}` : label, 'invalid JSON', `invalid JSON: ${msg} (a .json file must be one JSON array of rows, an object of splits, or JSON Lines)`, label, line);
  }
}

/**
 * Reads a whole JSON file (array of rows, or object of splits) into raw records with line numbers.
 * Documented limitation: such a file is held in memory; use JSON Lines for large data.
 */
export function jsonRecords(file: string, label: string, kind: 'json-array' | 'json-splits', split: string | undefined): RawRecord[] {
  const { text, value } = parseWhole(file, label);
  let arr: unknown;
  let start: number;
  if (kind === 'json-array' || Array.isArray(value)) {
    if (split !== undefined && split !== 'train') {
      throw new DatasetError(label, 'no such split', `the file is one array of rows, which is the 'train' split; there is no split '${split}' (use trainTestSplit for an eval set, or a folder with ${split}.jsonl)`, label);
    }
    arr = value;
    start = text.indexOf('[');
  } else {
    if (value === null || typeof value !== 'object') {
      throw new DatasetError(label, 'not rows', `expected a JSON array of rows or an object of splits, got ${typeof value}`, label);
    }
    const keys = Object.keys(value);
    const name = split ?? 'train';
    if (!(name in value)) {
      throw new DatasetError(label, 'no such split', `no split '${name}' in this JSON object (it has: ${keys.join(', ')}); pass { split: '<name>' }`, label);
    }
    arr = (value as Record<string, unknown>)[name];
    if (!Array.isArray(arr)) {
      throw new DatasetError(label, 'not rows', `split '${name}' must be an array of rows, got ${typeof arr}`, label);
    }
    start = topLevelValueOffset(text, name);
  }
  const rows = arr as unknown[];
  const offsets = start >= 0 ? arrayElementOffsets(text, start) : [];
  // Line numbers by one forward sweep over the offsets.
  const lines: number[] = [];
  let line = 1;
  let pos = 0;
  for (const off of offsets) {
    for (; pos < off; pos++) if (text.charCodeAt(pos) === 10) line++;
    lines.push(line);
  }
  const exact = lines.length === rows.length;
  return rows.map((v, i) => {
    const ln = exact ? lines[i] : undefined;
    const where = ln !== undefined ? `${label}:${ln}` : `${label}[${i}]`;
    return { source: `${file}#${split ?? ''}`, pos: i, where, file: label, line: ln, value: v };
  });
}

const DATA_EXT = /\.(jsonl|ndjson|json)(\.gz)?$/;

/**
 * The files of split `split` in a folder: `<split>.jsonl`/`.json`(`.gz`), or shards named
 * `<split>-*` / `<split>_*` / `<split>.*` (e.g. `train-00000-of-00002.jsonl`), in name order.
 */
export function splitFiles(dir: string, split: string): string[] {
  const names = fs.readdirSync(dir).filter((n) => DATA_EXT.test(n)).sort();
  const files = names.filter((n) => n.startsWith(split) && /^[-_.]/.test(n.slice(split.length)));
  if (files.length === 0) {
    const splits = [...new Set(names.map((n) => n.split(/[-_.]/)[0]))];
    throw new Error(`loadDataset: no '${split}' split in folder ${dir} (looked for ${split}.jsonl, ${split}.json and ${split}-*.jsonl shards; found splits: ${splits.length ? splits.join(', ') : 'none'})`);
  }
  return files.map((n) => path.join(dir, n));
}
