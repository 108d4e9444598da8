// safetensors read/write: the Hugging Face tensor file format (https://github.com/huggingface/safetensors),
// byte-compatible with the Python `safetensors` package in both directions.
//
// Layout: 8 bytes little-endian u64 N | N bytes of UTF-8 JSON header | data section.
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets relative to the start of the data section; row-major, little-endian) and may hold a
// "__metadata__" object of string → string. Python's writer orders tensors by descending dtype
// alignment, then name, packs their data contiguously from offset 0, and pads the header with spaces to
// a multiple of 8 bytes so every tensor's data starts 8-aligned; we write the same. Python's reader also
// insists the offsets tile the data section exactly (no gaps, nothing after the last tensor), so files
// we write must keep that property; our reader is more lenient (any in-range offsets load).
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Tensor } from '../tensor/tensor.js';
import { fromBytes, toBytes } from '../tensor/create.js';
import { type DType, type Device, DTYPES, ITEMSIZE, isFloating } from '../tensor/dtype.js';

/** What readSafetensorsHeader reports for one tensor. */
export interface SafetensorsTensorInfo {
  dtype: DType;
  shape: number[];
  /** [begin, end) byte offsets relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** The `__metadata__` map, or null when the file has none. */
  metadata: Record<string, string> | null;
  /** Tensor entries by name (JS lists integer-like names such as "0" first; sort by dataOffsets for file order). */
  tensors: Record<string, SafetensorsTensorInfo>;
}

export interface LoadSafetensorsOptions {
  /** Device to place the tensors on (default 'cpu'). */
  device?: Device | string;
  /** Converts floating-point tensors to this floating dtype after loading; integer and bool tensors keep theirs. */
  dtype?: DType;
  /** Load only these tensors (each must exist in the file); default: all. */
  names?: string[];
}

// Our dtype names ↔ safetensors' names.
const ST_NAME: Record<DType, string> = {
  float32: 'F32', float64: 'F64', bfloat16: 'BF16', float16: 'F16', int64: 'I64',
  int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
const FROM_ST: Record<string, DType> = Object.fromEntries(Object.entries(ST_NAME).map(([k, v]) => [v, k as DType]));
// Valid in the format but with no libtorch/llmrl dtype here: named separately so the error says so.
const UNSUPPORTED_ST = new Set(['U16', 'U32', 'U64', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64']);
// Rank of each dtype in the Rust crate's `Dtype` enum (declared in increasing alignment); the writer
// sorts by descending rank, then by name, exactly as Python's `serialize` does.
const ST_RANK: Record<string, number> = { BOOL: 0, U8: 1, I8: 2, I16: 3, F16: 4, BF16: 5, I32: 6, F32: 7, F64: 8, I64: 9 };

// Same cap as the Rust reader: a bigger header is certainly a corrupt length field, not a real header.
const MAX_HEADER_BYTES = 100_000_000;
// fs.readSync/writeSync move at most ~2 GiB per call; larger tensors go in chunks.
const IO_CHUNK = 1 << 30;

function fail(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

function readFully(fd: number, buf: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, Math.min(IO_CHUNK, buf.length - done), position + done);
    if (n === 0) fail(file, `unexpected end of file while reading ${what} (got ${done} of ${buf.length} bytes); the file is truncated`);
    done += n;
  }
}

function writeFully(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, Math.min(IO_CHUNK, buf.length - done));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function fmtList(a: unknown): string {
  return Array.isArray(a) ? `[${a.map((x) => JSON.stringify(x)).join(', ')}]` : JSON.stringify(a);
}

interface ParsedHeader extends SafetensorsHeader {
  /** Absolute file position where the data section starts (8 + N). */
  dataStart: number;
  fileSize: number;
}

/** Parses and validates the header from an open file descriptor. */
function parseHeader(fd: number, file: string): ParsedHeader {
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) fail(file, `file is ${fileSize} bytes, too short for a safetensors file (needs at least the 8-byte header length); it is empty, truncated or not a safetensors file`);
  const lenBuf = Buffer.alloc(8);
  readFully(fd, lenBuf, 0, file, 'the header length');
  const n = lenBuf.readBigUInt64LE(0);
  if (n > BigInt(fileSize - 8)) {
    fail(file, `header length field says ${n} bytes but only ${fileSize - 8} bytes follow it; the file is truncated or not a safetensors file`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit of the format; the file is corrupt`);
  const headerLen = Number(n);
  const headerBuf = Buffer.alloc(headerLen);
  readFully(fd, headerBuf, 8, file, 'the JSON header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch {
    fail(file, 'header is not valid UTF-8; the file is corrupt or not a safetensors file');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message}); the file is corrupt or not a safetensors file`);
  }
  if (!isPlainObject(json)) fail(file, `header must be a JSON object, got ${Array.isArray(json) ? 'an array' : JSON.stringify(json)}`);

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors: Record<string, SafetensorsTensorInfo> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (entry === null) continue;
      if (!isPlainObject(entry)) fail(file, `'__metadata__' must be an object of string values, got ${JSON.stringify(entry)}`);
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') fail(file, `'__metadata__' entry '${k}' must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    const where = `tensor '${name}'`;
    // A plain-object key named __proto__ would set the prototype instead of adding an entry.
    if (name === '__proto__') fail(file, `${where}: this name cannot be a key of a JS object; rename the tensor in the file`);
    if (!isPlainObject(entry)) fail(file, `${where}: header entry must be an object with dtype, shape and data_offsets, got ${JSON.stringify(entry)}`);
    const stDtype = entry.dtype;
    if (typeof stDtype !== 'string' || !(stDtype in FROM_ST)) {
      const known = Object.values(ST_NAME).join(', ');
      if (typeof stDtype === 'string' && UNSUPPORTED_ST.has(stDtype)) {
        fail(file, `${where} has dtype '${stDtype}', a safetensors dtype llmrl cannot hold (supported: ${known}); convert it in Python first`);
      }
      fail(file, `${where} has unknown dtype ${JSON.stringify(stDtype)}; expected one of ${known}`);
    }
    const dtype = FROM_ST[stDtype];
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(file, `${where} has shape ${fmtList(shape)}; expected an array of non-negative integers`);
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      fail(file, `${where} has data_offsets ${fmtList(offs)}; expected [begin, end] with non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    const dims = shape as number[];
    if (end < begin) fail(file, `${where} has data_offsets [${begin}, ${end}] with end before begin`);
    if (end > dataSize) {
      fail(file, `${where} has data_offsets [${begin}, ${end}] but the data section is only ${dataSize} bytes; the file is truncated or corrupt`);
    }
    // Multiply in order and stop on overflow, as the Rust reader does (its checked_mul rejects e.g.
    // [2^40, 2^40, 0] even though the product is 0).
    let need = ITEMSIZE[dtype];
    for (const d of dims) {
      need *= d;
      if (!Number.isSafeInteger(need)) fail(file, `${where} has shape [${dims.join(', ')}] whose size overflows; the header is corrupt`);
    }
    if (end - begin !== need) {
      fail(file, `${where} has data_offsets [${begin}, ${end}] (${end - begin} bytes) but shape [${dims.join(', ')}] of ${stDtype} needs ${need} bytes; the header is corrupt`);
    }
    tensors[name] = { dtype, shape: dims.slice(), dataOffsets: [begin, end] };
  }
  return { metadata, tensors, dataStart, fileSize };
}

function openForRead(path: string, fn: string): number {
  if (typeof path !== 'string' || path === '') throw new TypeError(`${fn}: 'path' must be a non-empty string, got ${JSON.stringify(path)}`);
  try {
    return fs.openSync(path, 'r');
  } catch (e) {
    throw new Error(`${path}: cannot open safetensors file: ${(e as Error).message}`);
  }
}

/**
 * Reads only the header of a safetensors file: `__metadata__` and each tensor's dtype, shape and data
 * offsets (validated against the file size), without touching the tensor data.
 */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path, 'readSafetensorsHeader');
  try {
    const { metadata, tensors } = parseHeader(fd, path);
    return { metadata, tensors };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Loads tensors from a safetensors file (as written by Python's `safetensors` or `saveSafetensors`).
 * Every returned tensor is a new, ordinary tracked Tensor that the caller owns (dispose it, or load
 * inside `tidy`). Either every requested tensor loads or none does: on any error the tensors already
 * created are disposed before the error is thrown.
 * @example const sd = loadSafetensors('model.safetensors', { device: 'cuda', dtype: 'bfloat16' });
 */
export function loadSafetensors(path: string, opts: LoadSafetensorsOptions = {}): Record<string, Tensor> {
  if (opts.dtype !== undefined && !(DTYPES.includes(opts.dtype) && isFloating(opts.dtype))) {
    throw new TypeError(`loadSafetensors: 'dtype' must be a floating dtype ('float32', 'float64', 'bfloat16', 'float16'), got ${JSON.stringify(opts.dtype)}; it converts only the floating-point tensors`);
  }
  if (opts.names !== undefined && !(Array.isArray(opts.names) && opts.names.every((n) => typeof n === 'string'))) {
    throw new TypeError(`loadSafetensors: 'names' must be an array of tensor names, got ${JSON.stringify(opts.names)}`);
  }
  const fd = openForRead(path, 'loadSafetensors');
  const out: Record<string, Tensor> = {};
  try {
    const header = parseHeader(fd, path);
    let names = Object.keys(header.tensors);
    if (opts.names) {
      const missing = opts.names.filter((n) => !Object.hasOwn(header.tensors, n));
      if (missing.length) {
        const have = names.slice(0, 10).map((n) => `'${n}'`).join(', ') + (names.length > 10 ? `, … (${names.length} in all)` : '');
        fail(path, `no tensor named ${missing.map((n) => `'${n}'`).join(', ')}; the file holds ${have || 'no tensors'}`);
      }
      names = [...new Set(opts.names)];
    }
    // Read in file order (sequential I/O) through one scratch buffer sized for the largest tensor:
    // fromBytes copies, so the buffer is reused and each byte of the file is read once.
    names.sort((a, b) => header.tensors[a].dataOffsets[0] - header.tensors[b].dataOffsets[0]);
    const maxBytes = names.reduce((m, n) => Math.max(m, header.tensors[n].dataOffsets[1] - header.tensors[n].dataOffsets[0]), 0);
    let scratch: Buffer;
    try {
      scratch = Buffer.allocUnsafe(maxBytes);
    } catch (e) {
      fail(path, `cannot allocate a ${maxBytes}-byte read buffer for the largest tensor (${(e as Error).message}); load fewer or smaller tensors with 'names'`);
    }
    for (const name of names) {
      const info = header.tensors[name];
      const [begin, end] = info.dataOffsets;
      const bytes = scratch.subarray(0, end - begin);
      readFully(fd, bytes, header.dataStart + begin, path, `tensor '${name}'`);
      const convert = opts.dtype !== undefined && isFloating(info.dtype) && opts.dtype !== info.dtype;
      try {
        if (!convert) {
          out[name] = fromBytes(bytes, info.shape, info.dtype, opts.device === undefined ? {} : { device: opts.device });
        } else {
          const raw = fromBytes(bytes, info.shape, info.dtype);
          try {
            out[name] = raw.to({ dtype: opts.dtype, device: opts.device });
          } finally {
            raw.dispose();
          }
        }
      } catch (e) {
        fail(path, `tensor '${name}' (${ST_NAME[info.dtype]} [${info.shape.join(', ')}]) could not be created: ${(e as Error).message}`);
      }
    }
    return out;
  } catch (e) {
    for (const t of Object.values(out)) t.dispose();
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes tensors to a safetensors file that Python's `safetensors.*.load_file` reads. The write is
 * atomic: data goes to a temporary file beside `path` which is renamed over it only once complete,
 * so a failed save leaves any existing file untouched. Tensors may live on any device (they are copied
 * to the CPU one at a time); `metadata` becomes the header's `__metadata__` (string values only).
 * @example saveSafetensors('ckpt/model.safetensors', model.stateDict(), { format: 'pt' });
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  if (typeof path !== 'string' || path === '') throw new TypeError(`saveSafetensors: 'path' must be a non-empty string, got ${JSON.stringify(path)}`);
  if (!isPlainObject(tensors) || tensors instanceof Tensor) {
    throw new TypeError(`saveSafetensors: 'tensors' must be an object mapping names to Tensors, got ${tensors instanceof Tensor ? 'a Tensor' : JSON.stringify(tensors)}; wrap it: { weight: t }`);
  }
  if (metadata !== undefined && metadata !== null) {
    if (!isPlainObject(metadata)) throw new TypeError(`saveSafetensors: 'metadata' must be an object of string values, got ${JSON.stringify(metadata)}`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new TypeError(`saveSafetensors: metadata['${k}'] must be a string (the format stores string → string only), got ${JSON.stringify(v)}; use String(value) or JSON.stringify(value)`);
      }
    }
  }
  // Check every tensor before creating any file, so a bad input cannot leave anything behind.
  const entries: { name: string; t: Tensor; st: string; shape: number[]; nbytes: number }[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new TypeError(`saveSafetensors: '__metadata__' is reserved by the format and cannot name a tensor; pass metadata as the third argument`);
    if (!(t instanceof Tensor)) throw new TypeError(`saveSafetensors: tensors['${name}'] must be a Tensor, got ${t === null ? 'null' : typeof t}`);
    if (t.isDisposed) throw new Error(`saveSafetensors: tensors['${name}'] has been disposed; save it before disposing it (or keep() it out of tidy)`);
    const dtype = t.dtype;
    const shape = t.shape;
    entries.push({ name, t, st: ST_NAME[dtype], shape, nbytes: shape.reduce((a, b) => a * b, 1) * ITEMSIZE[dtype] });
  }
  // Names compare as UTF-8 bytes, like Rust's String ordering (JS `<` compares UTF-16 code units,
  // which orders some non-BMP characters differently).
  const utf8 = new Map(entries.map((e) => [e.name, Buffer.from(e.name, 'utf8')]));
  entries.sort((a, b) => ST_RANK[b.st] - ST_RANK[a.st] || Buffer.compare(utf8.get(a.name)!, utf8.get(b.name)!));

  // Built by hand rather than from one object: JS objects list integer-like keys ("0", "1") first,
  // which would break the order written above.
  const parts: string[] = [];
  if (metadata) {
    const m = `{${Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
    parts.push(`"__metadata__":${m}`);
  }
  let offset = 0;
  for (const e of entries) {
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.st}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${offset + e.nbytes}]}`);
    offset += e.nbytes;
  }
  let header = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const pad = (8 - (header.length % 8)) % 8;
  if (pad) header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(header.length));

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    writeFully(fd, lenBuf);
    writeFully(fd, header);
    // One tensor's CPU copy at a time keeps peak memory at the largest tensor, not the whole model.
    for (const e of entries) {
      const bytes = toBytes(e.t);
      if (bytes.length !== e.nbytes) throw new Error(`saveSafetensors: tensors['${e.name}'] changed while saving (expected ${e.nbytes} bytes, got ${bytes.length})`);
      writeFully(fd, bytes);
    }
    fs.fsyncSync(fd); // the data must be on disk before the rename makes it the file's content
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) {
      try { fs.closeSync(fd); } catch { /* already failing; keep the original error */ }
    }
    try { fs.rmSync(tmp, { force: true }); } catch { /* best effort */ }
    const msg = (e as Error).message;
    throw new Error(msg.startsWith('saveSafetensors:') ? msg : `saveSafetensors: cannot write '${path}': ${msg}`, { cause: e });
  }
}
