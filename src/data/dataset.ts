// Datasets: `loadDataset(path | rows, opts)` gives an async-iterable `Dataset` of validated rows in one
// of TRL's formats (see format.ts), detected from the first row unless given. JSON Lines files are
// streamed (rows are read, parsed and validated lazily on every pass, so memory stays bounded);
// `.json` arrays and in-memory arrays are validated up front and held in memory. Malformed rows stop
// with a DatasetError naming `file:line` and what is wrong, or with `skipMalformed: true` are
// skipped and counted in `dataset.skipped`.
//
// Shuffling is deterministic: in-memory datasets get a seeded Fisher–Yates permutation (mulberry32);
// streamed ones a seeded buffer shuffle (as Hugging Face's IterableDataset.shuffle, default buffer
// 1000 rows): only rows within a window of `bufferSize` are mixed, so pre-shuffle huge files on disk
// if the order in the file is meaningful.
import fs from 'node:fs';
import {
  DatasetError, RowProblem, SkipReport, checkRow, detectFormat, isFormat, tagRowSource,
  DATASET_FORMATS, type DatasetFormat, type FormatInfo, type Row,
} from './format.js';
import { checkSeed, permutation, seededRandom, shuffleInPlace } from './rng.js';
import { fileKind, jsonRecords, jsonlRecords, splitFiles, type RawRecord } from './sources.js';

export interface LoadDatasetOptions {
  /** Row format; 'auto' (default) detects it from the first row. Every row must match it. */
  format?: 'auto' | DatasetFormat;
  /**
   * Split to read: for a folder, its `<split>.jsonl` / `<split>.json` / `<split>-*` shard files; for a
   * JSON object of splits, that key. A single file or array is the 'train' split. Default 'train'.
   */
  split?: string;
  /** Skip malformed rows (counted in `dataset.skipped`) instead of stopping with an error. Default false. */
  skipMalformed?: boolean;
}

export interface ShuffleOptions {
  /** Streamed datasets only: rows mixed within a window of this many (default 1000, as HF datasets). */
  bufferSize?: number;
}

export interface SplitOptions {
  /** Fraction in (0, 1) (rounded up, as HF) or a row count ≥ 1. */
  testSize: number;
  /** Seed of the split's permutation. Default 42. */
  seed?: number;
  /** Shuffle before splitting (default true); false takes the last rows as the test set. */
  shuffle?: boolean;
}

type Producer<R> = () => AsyncGenerator<R>;

const DEFAULT_BUFFER = 1000;

/**
 * A dataset of rows. In memory (arrays, `.json` files) or streamed (JSON Lines); iterate with
 * `for await (const row of dataset)` or `dataset.rows()`. Derived datasets (`shuffle`, `take`,
 * `skip`, `filter`, `map`, splits) are lazy for streamed data and share `skipped`.
 */
export class Dataset<R extends Row = Row> implements AsyncIterable<R> {
  /** @internal Use loadDataset / datasetFromRows. */
  constructor(
    private readonly info: FormatInfo,
    /** Where the rows come from: a path, or '<rows>'. */
    readonly source: string,
    /** Malformed rows skipped so far (with `skipMalformed: true`): count, per-reason counts, examples. */
    readonly skipped: SkipReport,
    private readonly items: R[] | null,
    private readonly producer: Producer<R> | null,
    private readonly knownSize?: number,
  ) {}

  /** The rows' format. */
  get format(): DatasetFormat { return this.info.format; }
  /** Whether fields are message lists rendered with the chat template. */
  get conversational(): boolean { return this.info.conversational; }
  /** Number of rows when known (in memory, or after take/split); undefined for a plain stream. */
  get size(): number | undefined { return this.items ? this.items.length : this.knownSize; }
  /** True when rows are read from a file on every pass. */
  get streamed(): boolean { return this.items === null; }
  /** The rows, when held in memory (read-only view). */
  get rowsInMemory(): readonly R[] | undefined { return this.items ?? undefined; }

  private derive<S extends Row = R>(items: S[] | null, producer: Producer<S> | null, size?: number): Dataset<S> {
    return new Dataset<S>(this.info, this.source, this.skipped, items, producer, size);
  }

  /** Iterates the rows (a fresh pass each call). */
  async *rows(): AsyncGenerator<R> {
    if (this.items) {
      for (const r of this.items) yield r;
      return;
    }
    yield* this.producer!();
  }

  [Symbol.asyncIterator](): AsyncIterator<R> { return this.rows(); }

  /** All rows in an array (reads a streamed file whole: for small data). */
  async toArray(): Promise<R[]> {
    if (this.items) return [...this.items];
    const out: R[] = [];
    for await (const r of this.rows()) out.push(r);
    return out;
  }

  /** The same rows held in memory (a streamed file is read once). */
  async load(): Promise<Dataset<R>> {
    return this.items ? this : this.derive(await this.toArray(), null);
  }

  /** The first `n` rows. */
  take(n: number): Dataset<R> {
    checkCount(n, 'take');
    if (this.items) return this.derive(this.items.slice(0, n), null);
    const src = this.producer!;
    return this.derive(null, async function* () {
      if (n === 0) return;
      let i = 0;
      for await (const r of src()) {
        yield r;
        if (++i >= n) return;
      }
    }, this.knownSize === undefined ? undefined : Math.min(n, this.knownSize));
  }

  /** All rows but the first `n`. */
  skip(n: number): Dataset<R> {
    checkCount(n, 'skip');
    if (this.items) return this.derive(this.items.slice(n), null);
    const src = this.producer!;
    return this.derive(null, async function* () {
      let i = 0;
      for await (const r of src()) if (i++ >= n) yield r;
    }, this.knownSize === undefined ? undefined : Math.max(0, this.knownSize - n));
  }

  /** Rows for which `pred(row, index)` holds. */
  filter(pred: (row: R, index: number) => boolean): Dataset<R> {
    if (this.items) return this.derive(this.items.filter(pred), null);
    const src = this.producer!;
    return this.derive(null, async function* () {
      let i = 0;
      for await (const r of src()) if (pred(r, i++)) yield r;
    });
  }

  /** Rows transformed by `fn(row, index)` (e.g. adding a column). The format is not re-checked. */
  map<S extends Row>(fn: (row: R, index: number) => S): Dataset<S> {
    if (this.items) return this.derive<S>(this.items.map(fn), null);
    const src = this.producer!;
    return this.derive<S>(null, async function* () {
      let i = 0;
      for await (const r of src()) yield fn(r, i++);
    }, this.knownSize);
  }

  /**
   * A deterministic shuffle: the same seed gives the same order on every pass and every machine.
   * In memory: Fisher–Yates with mulberry32 (seeded through mixSeed). Streamed: a buffer shuffle (HF's algorithm) over
   * `bufferSize` rows (default 1000), restarted from `seed` on each pass.
   */
  shuffle(seed: number, opts: ShuffleOptions = {}): Dataset<R> {
    checkSeed(seed, 'Dataset.shuffle');
    if (this.items) return this.derive(shuffleInPlace([...this.items], seededRandom(seed)), null);
    const size = opts.bufferSize ?? DEFAULT_BUFFER;
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`Dataset.shuffle: 'bufferSize' must be an integer ≥ 1, got ${size}`);
    const src = this.producer!;
    return this.derive(null, async function* () {
      const rand = seededRandom(seed);
      const buf: R[] = [];
      for await (const r of src()) {
        if (buf.length < size) {
          buf.push(r);
          continue;
        }
        const i = Math.floor(rand() * size);
        yield buf[i];
        buf[i] = r;
      }
      shuffleInPlace(buf, rand);
      yield* buf;
    }, this.knownSize);
  }

  /**
   * Splits into disjoint train and test sets (HF's train_test_split: n_test = ceil(testSize · n) for a
   * fraction). In memory: a seeded permutation, test = its first n_test rows, train = the rest, both
   * in permuted order. Streamed: one counting pass, then both sets stream in file order, membership
   * decided by the same seeded permutation (a 4-byte-per-row index is built once).
   */
  async trainTestSplit(opts: SplitOptions): Promise<{ train: Dataset<R>; test: Dataset<R> }> {
    if (!opts || typeof opts !== 'object') throw new TypeError('trainTestSplit: pass { testSize, seed? }');
    const seed = checkSeed(opts.seed ?? 42, 'trainTestSplit');
    const shuffle = opts.shuffle ?? true;
    let n = this.size;
    if (n === undefined) {
      n = 0;
      for await (const _ of this.rows()) n++;
    }
    const nTest = splitCount(opts.testSize, n);
    const nTrain = n - nTest;
    const order = shuffle ? permutation(n, seed) : null;
    if (this.items) {
      const items = this.items;
      const pick = (from: number, to: number): R[] => {
        const out: R[] = [];
        for (let i = from; i < to; i++) out.push(items[order ? order[i] : i]);
        return out;
      };
      // With shuffling, test is the permutation's head (as HF); without, the tail.
      return order
        ? { test: this.derive(pick(0, nTest), null), train: this.derive(pick(nTest, n), null) }
        : { train: this.derive(pick(0, nTrain), null), test: this.derive(pick(nTrain, n), null) };
    }
    const inTest = new Uint8Array(n);
    if (order) for (let i = 0; i < nTest; i++) inTest[order[i]] = 1;
    else inTest.fill(1, nTrain);
    const src = this.producer!;
    const part = (want: number): Producer<R> => async function* () {
      let i = 0;
      for await (const r of src()) {
        if (i >= n!) throw new Error(`trainTestSplit: ${i + 1} rows read, but the counting pass saw ${n}; the file changed after the split was made`);
        if (inTest[i++] === want) yield r;
      }
    };
    return { train: this.derive(null, part(0), nTrain), test: this.derive(null, part(1), nTest) };
  }
}

function checkCount(n: number, name: string): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`Dataset.${name}: expected an integer ≥ 0, got ${n}`);
}

function splitCount(testSize: number, n: number): number {
  if (typeof testSize !== 'number' || !Number.isFinite(testSize) || testSize <= 0 || (testSize >= 1 && !Number.isInteger(testSize))) {
    throw new RangeError(`trainTestSplit: 'testSize' must be a fraction in (0, 1) or a row count ≥ 1, got ${testSize}`);
  }
  const nTest = testSize < 1 ? Math.ceil(testSize * n) : testSize;
  if (nTest < 1 || nTest >= n) {
    throw new RangeError(`trainTestSplit: testSize ${testSize} of ${n} rows leaves ${nTest} test and ${n - nTest} train rows; both sets need at least one`);
  }
  return nTest;
}

/** Validation state shared by the passes over one source. */
class Validator {
  info: FormatInfo | null;
  constructor(private readonly format: DatasetFormat | undefined, private readonly skip: boolean, readonly report: SkipReport) {
    this.info = null;
  }

  /** Returns the validated row, or null when skipped; throws a DatasetError otherwise. */
  accept(rec: RawRecord): Row | null {
    try {
      if (rec.problem) throw rec.problem;
      if (!this.info) this.info = detectFormat(rec.value, this.format);
      const row = checkRow(rec.value, this.info);
      return tagRowSource(row, rec.where);
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      if (!this.skip) throw new DatasetError(rec.where, e.kind, e.message, rec.file, rec.line);
      this.report.record(rec.source, rec.pos, rec.where, e.kind, e.message);
      return null;
    }
  }

  /** The format, once a valid row was seen (or given). */
  get formatInfo(): FormatInfo {
    return this.info ?? { format: this.format ?? 'prompt', conversational: false };
  }
}

function resolveFormat(opts: LoadDatasetOptions, where: string): DatasetFormat | undefined {
  const f = opts.format ?? 'auto';
  if (f === 'auto') return undefined;
  if (!isFormat(f)) throw new TypeError(`${where}: 'format' must be 'auto' or one of ${DATASET_FORMATS.join(', ')}; got ${JSON.stringify(f)}`);
  return f;
}

function checkOptions(opts: LoadDatasetOptions): void {
  if (opts === null || typeof opts !== 'object') throw new TypeError('loadDataset: options must be an object');
  const known = ['format', 'split', 'skipMalformed'];
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) throw new TypeError(`loadDataset: unknown option '${k}' (known: ${known.join(', ')})`);
  }
}

/**
 * A dataset over in-memory rows, validated now (errors name `rows[i]`). Rows are used as given
 * (not copied), except preference rows whose prompt is extracted from chosen/rejected.
 */
export function datasetFromRows<R extends Row = Row>(rows: readonly unknown[], opts: LoadDatasetOptions = {}): Dataset<R> {
  checkOptions(opts);
  if (!Array.isArray(rows)) throw new TypeError('datasetFromRows: \'rows\' must be an array of row objects');
  if (opts.split !== undefined && opts.split !== 'train') {
    throw new RangeError(`loadDataset: an array of rows is the 'train' split; there is no split '${opts.split}' (use trainTestSplit)`);
  }
  const v = new Validator(resolveFormat(opts, 'loadDataset'), opts.skipMalformed ?? false, new SkipReport());
  const out: R[] = [];
  rows.forEach((value, i) => {
    const row = v.accept({ source: '<rows>', pos: i, where: `rows[${i}]`, value });
    if (row) out.push(row as R);
  });
  if (!v.info && rows.length === 0 && !opts.format) throw new RangeError('loadDataset: the array of rows is empty, so its format cannot be detected; pass { format }');
  return new Dataset<R>(v.formatInfo, '<rows>', v.report, out, null);
}

/**
 * Loads a dataset from a JSON Lines file (streamed), a `.json` file (read whole), a folder of split
 * files, or an array of rows.
 * @example const ds = await loadDataset('data/train.jsonl'); for await (const row of ds) …
 */
export async function loadDataset<R extends Row = Row>(source: string | readonly unknown[], opts: LoadDatasetOptions = {}): Promise<Dataset<R>> {
  if (Array.isArray(source)) return datasetFromRows<R>(source, opts);
  checkOptions(opts);
  if (typeof source !== 'string') throw new TypeError(`loadDataset: 'source' must be a file or folder path or an array of rows, got ${typeof source}`);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw new Error(`loadDataset: ${source} not found (expected a .jsonl / .json file, a folder of split files, or an array of rows)`);
  }
  const format = resolveFormat(opts, 'loadDataset');
  const files = stat.isDirectory() ? splitFiles(source, opts.split ?? 'train') : [source];
  const kinds = await Promise.all(files.map(fileKind));
  if (!stat.isDirectory() && kinds[0] === 'jsonl' && opts.split !== undefined && opts.split !== 'train') {
    throw new RangeError(`loadDataset: ${source} is one file, which is the 'train' split; there is no split '${opts.split}' (use trainTestSplit, or a folder with ${opts.split}.jsonl)`);
  }
  const validator = new Validator(format, opts.skipMalformed ?? false, new SkipReport());
  const split = stat.isDirectory() ? undefined : opts.split;

  // Whole-JSON files only: read into memory once.
  if (kinds.every((k) => k !== 'jsonl')) {
    const out: R[] = [];
    files.forEach((f, i) => {
      for (const rec of jsonRecords(f, f, kinds[i] as 'json-array' | 'json-splits', split)) {
        const row = validator.accept(rec);
        if (row) out.push(row as R);
      }
    });
    if (!validator.info && !format) throw new RangeError(`loadDataset: ${source} has no valid rows, so its format cannot be detected; pass { format }`);
    return new Dataset<R>(validator.formatInfo, source, validator.report, out, null);
  }

  // Streamed: each pass re-reads the files; JSON-array shards among them are parsed per pass.
  async function* raw(): AsyncGenerator<RawRecord> {
    for (let i = 0; i < files.length; i++) {
      if (kinds[i] === 'jsonl') yield* jsonlRecords(files[i], files[i]);
      else yield* jsonRecords(files[i], files[i], kinds[i] as 'json-array' | 'json-splits', split);
    }
  }
  async function* produce(): AsyncGenerator<R> {
    for await (const rec of raw()) {
      const row = validator.accept(rec);
      if (row) yield row as R;
    }
  }
  // Detect the format now, from the first valid row (earlier malformed rows error or are counted).
  const it = raw();
  try {
    for await (const rec of it) if (validator.accept(rec)) break;
  } finally {
    await it.return(undefined);
  }
  if (!validator.info && !format) throw new RangeError(`loadDataset: ${source} has no valid rows, so its format cannot be detected; pass { format }`);
  return new Dataset<R>(validator.formatInfo, source, validator.report, null, produce);
}
