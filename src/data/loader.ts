// A DataLoader-like batcher: `batches(dataset, { batchSize, shuffle, seed, dropLast, epochs })` is an
// async iterable of row arrays with a resumable position. The position is (epoch, index): the
// epoch number and how many rows of that epoch's order were handed out. Each epoch's order is a
// pure function of (seed, epoch), so `DataLoader.fromState(dataset, loader.state())` continues with
// exactly the batches an uninterrupted loader would have produced (a streamed file is re-read and
// the first `index` rows of the epoch skipped).
import { Dataset } from './dataset.js';
import type { Row } from './format.js';
import { checkSeed, mixSeed } from './rng.js';

export interface LoaderOptions {
  /** Rows per batch (≥ 1). */
  batchSize: number;
  /** Reshuffle every epoch (seeded by seed and the epoch number). Default false. */
  shuffle?: boolean;
  /** Seed of the per-epoch shuffles. Default 42 (transformers' TrainingArguments.seed). */
  seed?: number;
  /** Drop an epoch's last batch when it has fewer than batchSize rows. Default false. */
  dropLast?: boolean;
  /** Epochs one iteration covers (a resumed loader stops at the same total). Default 1; Infinity allowed. */
  epochs?: number;
  /** Streamed datasets: the shuffle buffer (default 1000 rows). */
  shuffleBufferSize?: number;
}

/** A loader's resumable position and settings (JSON-serialisable; store it in checkpoints). */
export interface LoaderState {
  version: 1;
  epoch: number;
  /** Rows of the current epoch already handed out. */
  index: number;
  batchSize: number;
  shuffle: boolean;
  seed: number;
  dropLast: boolean;
  /** null stands for Infinity (JSON has no Infinity). */
  epochs: number | null;
  shuffleBufferSize: number;
  /** The dataset's size when known, checked on resume. */
  datasetSize: number | null;
}

const KNOWN = ['batchSize', 'shuffle', 'seed', 'dropLast', 'epochs', 'shuffleBufferSize'];

function checkInt(v: unknown, name: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new RangeError(`DataLoader: '${name}' must be an integer ≥ ${min}, got ${String(v)}`);
  return v;
}

export class DataLoader<R extends Row = Row> implements AsyncIterable<R[]> {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly epochs: number;
  readonly shuffleBufferSize: number;
  private epochNo = 0;
  private index = 0;
  private running = false;

  constructor(readonly dataset: Dataset<R>, opts: LoaderOptions) {
    if (!(dataset instanceof Dataset)) throw new TypeError('DataLoader: \'dataset\' must be a Dataset (loadDataset / datasetFromRows)');
    if (!opts || typeof opts !== 'object') throw new TypeError('DataLoader: pass options { batchSize, shuffle?, seed?, dropLast?, epochs? }');
    for (const k of Object.keys(opts)) if (!KNOWN.includes(k)) throw new TypeError(`DataLoader: unknown option '${k}' (known: ${KNOWN.join(', ')})`);
    this.batchSize = checkInt(opts.batchSize, 'batchSize', 1);
    this.shuffle = opts.shuffle ?? false;
    this.seed = checkSeed(opts.seed ?? 42, 'DataLoader');
    this.dropLast = opts.dropLast ?? false;
    const epochs = opts.epochs ?? 1;
    if (epochs !== Infinity) checkInt(epochs, 'epochs', 1);
    this.epochs = epochs;
    this.shuffleBufferSize = checkInt(opts.shuffleBufferSize ?? 1000, 'shuffleBufferSize', 1);
  }

  /** Rebuilds a loader at a saved position (settings come from the state). */
  static fromState<R extends Row>(dataset: Dataset<R>, state: LoaderState): DataLoader<R> {
    if (!state || typeof state !== 'object' || state.version !== 1) {
      throw new TypeError('DataLoader.fromState: not a loader state (expected the object from loader.state(), version 1)');
    }
    const loader = new DataLoader(dataset, {
      batchSize: state.batchSize, shuffle: state.shuffle, seed: state.seed, dropLast: state.dropLast,
      epochs: state.epochs === null ? Infinity : state.epochs, shuffleBufferSize: state.shuffleBufferSize,
    });
    loader.epochNo = checkInt(state.epoch, 'epoch', 0);
    loader.index = checkInt(state.index, 'index', 0);
    const size = dataset.size;
    if (state.datasetSize !== null && size !== undefined && size !== state.datasetSize) {
      throw new RangeError(`DataLoader.fromState: the state was saved for a dataset of ${state.datasetSize} rows, but this one has ${size}; resume with the same data`);
    }
    if (size !== undefined && loader.index > size) {
      throw new RangeError(`DataLoader.fromState: index ${loader.index} is past the dataset's ${size} rows`);
    }
    return loader;
  }

  /** The current position and settings, to store in a checkpoint. */
  state(): LoaderState {
    return {
      version: 1, epoch: this.epochNo, index: this.index, batchSize: this.batchSize, shuffle: this.shuffle,
      seed: this.seed, dropLast: this.dropLast, epochs: this.epochs === Infinity ? null : this.epochs,
      shuffleBufferSize: this.shuffleBufferSize, datasetSize: this.dataset.size ?? null,
    };
  }

  /** The epoch the next batch comes from (0-based). */
  get epoch(): number { return this.epochNo; }
  /** Rows of the current epoch handed out so far. */
  get position(): number { return this.index; }

  /** Batches per epoch, when the dataset's size is known. */
  get batchesPerEpoch(): number | undefined {
    const n = this.dataset.size;
    if (n === undefined) return undefined;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The rows of `epoch` in order (shuffled per seed and epoch when shuffle is on). */
  epochOrder(epoch: number): Dataset<R> {
    return this.shuffle ? this.dataset.shuffle(mixSeed(this.seed, epoch), { bufferSize: this.shuffleBufferSize }) : this.dataset;
  }

  /**
   * Yields batches from the current position to the end of the last epoch. The position advances
   * as each batch is handed out, so `state()` taken after processing a batch resumes after it.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<R[]> {
    if (this.running) throw new Error('DataLoader: already being iterated; one loop at a time (the position is shared)');
    this.running = true;
    try {
      while (this.epochNo < this.epochs) {
        const rows = this.epochOrder(this.epochNo).skip(this.index);
        let batch: R[] = [];
        for await (const row of rows) {
          batch.push(row);
          if (batch.length === this.batchSize) {
            this.index += batch.length;
            const out = batch;
            batch = [];
            yield out;
          }
        }
        if (batch.length > 0 && !this.dropLast) {
          this.index += batch.length;
          yield batch;
        }
        this.epochNo += 1;
        this.index = 0;
      }
    } finally {
      this.running = false;
    }
  }
}

/**
 * Batches of rows from `dataset`, resumable via `state()` / `DataLoader.fromState`.
 * @example for await (const rows of batches(ds, { batchSize: 8, shuffle: true, seed: 1 })) { … }
 */
export function batches<R extends Row>(dataset: Dataset<R>, opts: LoaderOptions): DataLoader<R> {
  return new DataLoader(dataset, opts);
}
