// safetensors read/write (src/io/safetensors.ts): round trips of every dtype, the Python-written
// fixture (scripts/fixtures/make_safetensors_fixture.py), byte-identical re-serialisation, corrupt
// headers, atomic writes, and, where Python's `safetensors` is installed, Python reading our files.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DTYPES, type DType, Tensor, fromBytes, memory, tensor, tidy, toBytes, zeros } from '../../src/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../src/io/safetensors.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'safetensors');
let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-safetensors-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const hex = (t: Tensor): string => Buffer.from(toBytes(t)).toString('hex');

/** A 2×3 tensor of each dtype, with values that dtype holds exactly. */
function sample(dt: DType): Tensor {
  if (dt === 'bool') return tensor([[true, false, true], [false, false, true]]);
  if (dt === 'uint8') return tensor([[0, 1, 2], [127, 200, 255]], { dtype: dt });
  return tensor([[0, -1, 2.5], [-3, 100, 7]].map((r) => r.map((x) => (dt.startsWith('int') ? Math.trunc(x) : x))), { dtype: dt });
}

/** Writes a file with the given header (object or raw string) and data bytes; `headerLen` overrides the length field. */
function writeRaw(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: bigint): string {
  const p = path.join(dir, name);
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(h.length));
  fs.writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

function headerOf(p: string): { n: number; json: string } {
  const b = fs.readFileSync(p);
  const n = Number(b.readBigUInt64LE(0));
  return { n, json: b.subarray(8, 8 + n).toString('utf8') };
}

describe('round trip', () => {
  test('every dtype, 0-d and empty tensors: dtype, shape and bytes survive', () => tidy(() => {
    const src: Record<string, Tensor> = {};
    for (const dt of DTYPES) {
      src[`${dt}.matrix`] = sample(dt);
      src[`${dt}.scalar`] = sample(dt).reshape([-1]).select(0, 2); // 0-d
      src[`${dt}.empty`] = zeros([0, 4], { dtype: dt });
    }
    const p = path.join(dir, 'all.safetensors');
    saveSafetensors(p, src);
    const back = loadSafetensors(p);
    expect(Object.keys(back).sort()).toEqual(Object.keys(src).sort());
    for (const [k, t] of Object.entries(src)) {
      expect(back[k].dtype, k).toBe(t.dtype);
      expect(back[k].shape, k).toEqual(t.shape);
      expect(back[k].device, k).toBe('cpu');
      expect(hex(back[k]), k).toBe(hex(t));
      expect(back[k].toArray(), k).toEqual(t.toArray());
    }
    expect(src['float32.scalar'].shape).toEqual([]);
    expect(back['bfloat16.matrix'].toArray()).toEqual([[0, -1, 2.5], [-3, 100, 7]]);
    expect(back['int64.matrix'].toArray()).toEqual([[0, -1, 2], [-3, 100, 7]]);
  }));

  test('layout is what Python writes: dtype-alignment then name order, contiguous offsets, header padded to 8', () => tidy(() => {
    const p = path.join(dir, 'layout.safetensors');
    saveSafetensors(p, {
      b: zeros([3], { dtype: 'bool' }), a: zeros([2], { dtype: 'float32' }), z: zeros([1], { dtype: 'int64' }),
      h: zeros([2], { dtype: 'float16' }), bf: zeros([2], { dtype: 'bfloat16' }), '10': zeros([1], { dtype: 'float32' }),
    });
    const { n, json } = headerOf(p);
    expect(n % 8).toBe(0);
    expect(json).toBe(json.trimEnd() + ' '.repeat(n - json.trimEnd().length));
    const order = [...json.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
    expect(order).toEqual(['z', '10', 'a', 'bf', 'h', 'b']); // I64, F32 (by name), BF16, F16, BOOL
    const h = readSafetensorsHeader(p);
    expect(Object.keys(h.tensors).sort((x, y) => h.tensors[x].dataOffsets[0] - h.tensors[y].dataOffsets[0])).toEqual(order);
    let end = 0;
    for (const k of order) {
      expect(h.tensors[k].dataOffsets[0]).toBe(end);
      end = h.tensors[k].dataOffsets[1];
    }
    expect(fs.statSync(p).size).toBe(8 + n + end); // nothing after the last tensor (Python checks this)
    expect(h.metadata).toBeNull();
  }));

  test('metadata round trip; readSafetensorsHeader reads dtypes, shapes and offsets without data', () => tidy(() => {
    const p = path.join(dir, 'meta.safetensors');
    const metadata = { format: 'pt', step: '1200', note: 'ünïcode ✓ "quoted"' };
    saveSafetensors(p, { w: zeros([2, 3], { dtype: 'bfloat16' }), s: tensor(1.5) }, metadata);
    const h = readSafetensorsHeader(p);
    expect(h.metadata).toEqual(metadata);
    expect(h.tensors).toEqual({
      s: { dtype: 'float32', shape: [], dataOffsets: [0, 4] },
      w: { dtype: 'bfloat16', shape: [2, 3], dataOffsets: [4, 16] },
    });
    expect(loadSafetensors(p).s.item()).toBe(1.5);
  }));

  test('non-contiguous inputs are saved in logical (row-major) order', () => tidy(() => {
    const p = path.join(dir, 'transposed.safetensors');
    const t = tensor([[1, 2, 3], [4, 5, 6]]).t();
    saveSafetensors(p, { t });
    expect(loadSafetensors(p).t.toArray()).toEqual([[1, 4], [2, 5], [3, 6]]);
  }));

  test('options: names picks tensors, dtype converts floating tensors only, device places them', () => tidy(() => {
    const p = path.join(dir, 'opts.safetensors');
    saveSafetensors(p, { w: sample('bfloat16'), ids: sample('int64'), m: sample('bool'), x: sample('float64') });
    const some = loadSafetensors(p, { names: ['w', 'ids'] });
    expect(Object.keys(some).sort()).toEqual(['ids', 'w']);
    const conv = loadSafetensors(p, { dtype: 'float32', device: 'cpu' });
    expect(conv.w.dtype).toBe('float32');
    expect(conv.x.dtype).toBe('float32');
    expect(conv.ids.dtype).toBe('int64');
    expect(conv.m.dtype).toBe('bool');
    expect(conv.w.toArray()).toEqual([[0, -1, 2.5], [-3, 100, 7]]);
    expect(() => loadSafetensors(p, { names: ['w', 'nope'] })).toThrow(`${p}: no tensor named 'nope'`);
    expect(() => loadSafetensors(p, { dtype: 'int32' })).toThrow(/'dtype' must be a floating dtype/);
  }));

  test('an empty dict round-trips (the Rust crate writes "{}" plus 6 spaces)', () => {
    const p = path.join(dir, 'none.safetensors');
    saveSafetensors(p, {});
    expect(fs.readFileSync(p)).toEqual(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    expect(loadSafetensors(p)).toEqual({});
  });

  test('loaded tensors are ordinary tracked tensors: tidy disposes them, memory returns to baseline', () => {
    const p = path.join(dir, 'tracked.safetensors');
    tidy(() => saveSafetensors(p, { a: zeros([64]), b: zeros([8], { dtype: 'int32' }) }));
    const base = memory().liveTensors;
    let kept: Tensor[] = [];
    tidy(() => { kept = Object.values(loadSafetensors(p)); });
    expect(kept.every((t) => t.isDisposed)).toBe(true);
    expect(memory().liveTensors).toBe(base);
  });
});

describe('the Python-made fixture', () => {
  const file = path.join(FIXTURES, 'python.safetensors');
  interface Expected { metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: (number | string | boolean)[]; bytes_hex: string }> }
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'python.expected.json'), 'utf8')) as Expected;
  const ST: Record<string, DType> = { F32: 'float32', F64: 'float64', BF16: 'bfloat16', F16: 'float16', I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool' };

  test('loads every tensor with the values Python wrote', () => tidy(() => {
    const got = loadSafetensors(file);
    expect(Object.keys(got).sort()).toEqual(Object.keys(expected.tensors).sort());
    for (const [name, e] of Object.entries(expected.tensors)) {
      const t = got[name];
      expect(t.dtype, name).toBe(ST[e.dtype]);
      expect(t.shape, name).toEqual(e.shape);
      expect(hex(t), name).toBe(e.bytes_hex);
      const flat = Array.from(t.toTypedArray() as ArrayLike<number | bigint>);
      const want = e.values.map((v) => {
        if (e.dtype === 'I64') return BigInt(v as string); // beyond 2^53: compared exactly
        if (e.dtype === 'BOOL') return v ? 1 : 0;
        if (v === 'nan') return NaN;
        if (v === 'inf') return Infinity;
        if (v === '-inf') return -Infinity;
        return v;
      });
      expect(flat, name).toEqual(want);
    }
    expect(got['i64.vec'].toTypedArray()).toEqual(new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n, 42n]));
    expect(got['bf16.vec'].toArray()).toEqual([1, -2.5, 3.140625, 3.3895313892515355e38]);
  }));

  test('header and metadata as Python wrote them', () => {
    const h = readSafetensorsHeader(file);
    expect(h.metadata).toEqual(expected.metadata);
    expect(h.tensors['f32.matrix']).toEqual({ dtype: 'float32', shape: [2, 3], dataOffsets: expect.any(Array) });
  });

  test('loading and re-saving reproduces the Python file byte for byte', () => tidy(() => {
    const p = path.join(dir, 'resaved.safetensors');
    saveSafetensors(p, loadSafetensors(file), readSafetensorsHeader(file).metadata ?? undefined);
    expect(fs.readFileSync(p).equals(fs.readFileSync(file))).toBe(true);
  }));
});

describe('corrupt files: errors name the file and the tensor', () => {
  const f32 = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).buffer);

  test('shorter than the 8-byte length field', () => {
    const p = path.join(dir, 'tiny.safetensors');
    fs.writeFileSync(p, Buffer.from([1, 2, 3]));
    expect(() => loadSafetensors(p)).toThrow(`${p}: file is 3 bytes, too short`);
  });

  test('header length larger than the file', () => {
    const p = writeRaw('biglen.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1), 10_000n);
    expect(() => loadSafetensors(p)).toThrow(`${p}: header length field says 10000 bytes but only`);
    expect(() => readSafetensorsHeader(p)).toThrow(/truncated or not a safetensors file/);
    const huge = writeRaw('hugelen.safetensors', '{}', undefined, 2n ** 64n - 1n);
    expect(() => loadSafetensors(huge)).toThrow(`${huge}: header length field says 18446744073709551615 bytes`);
  });

  test('invalid JSON, and JSON that is not an object', () => {
    const p = writeRaw('badjson.safetensors', '{"a": {"dtype": "F32",');
    expect(() => loadSafetensors(p)).toThrow(`${p}: header is not valid JSON`);
    const q = writeRaw('array.safetensors', '[1, 2]');
    expect(() => loadSafetensors(q)).toThrow(`${q}: header must be a JSON object, got an array`);
  });

  test('unknown and unsupported dtypes', () => {
    const p = writeRaw('dtype.safetensors', { 'layer.0.w': { dtype: 'F31', shape: [1], data_offsets: [0, 4] } }, f32(1));
    expect(() => loadSafetensors(p)).toThrow(`${p}: tensor 'layer.0.w' has unknown dtype "F31"; expected one of F32, F64, BF16, F16, I64, I32, I16, I8, U8, BOOL`);
    const q = writeRaw('u32.safetensors', { counts: { dtype: 'U32', shape: [1], data_offsets: [0, 4] } }, f32(1));
    expect(() => readSafetensorsHeader(q)).toThrow(`${q}: tensor 'counts' has dtype 'U32', a safetensors dtype llmrl cannot hold`);
  });

  test('bad shapes', () => {
    const p = writeRaw('shape.safetensors', { w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, f32(2));
    expect(() => loadSafetensors(p)).toThrow(`${p}: tensor 'w' has shape [2, -1]; expected an array of non-negative integers`);
    const q = writeRaw('overflow.safetensors', { w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 0], data_offsets: [0, 0] } });
    expect(() => loadSafetensors(q)).toThrow(`${q}: tensor 'w' has shape [1099511627776, 1099511627776, 0] whose size overflows`);
  });

  test('data_offsets out of range or malformed', () => {
    const p = writeRaw('range.safetensors', { ok: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, 'lm_head.weight': { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(2));
    expect(() => loadSafetensors(p)).toThrow(`${p}: tensor 'lm_head.weight' has data_offsets [4, 12] but the data section is only 8 bytes`);
    const q = writeRaw('backwards.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32(1));
    expect(() => loadSafetensors(q)).toThrow(`${q}: tensor 'w' has data_offsets [4, 0] with end before begin`);
    const r = writeRaw('missing.safetensors', { w: { dtype: 'F32', shape: [1] } }, f32(1));
    expect(() => loadSafetensors(r)).toThrow(`${r}: tensor 'w' has data_offsets undefined; expected [begin, end]`);
  });

  test('byte count that does not match shape × dtype', () => {
    const p = writeRaw('count.safetensors', { 'lm_head.weight': { dtype: 'F32', shape: [2, 3], data_offsets: [0, 12] } }, f32(3));
    expect(() => loadSafetensors(p)).toThrow(`${p}: tensor 'lm_head.weight' has data_offsets [0, 12] (12 bytes) but shape [2, 3] of F32 needs 24 bytes`);
  });

  test('metadata values must be strings', () => {
    const p = writeRaw('meta.safetensors', { __metadata__: { step: 3 } });
    expect(() => readSafetensorsHeader(p)).toThrow(`${p}: '__metadata__' entry 'step' must be a string, got 3`);
  });

  test('a missing file names the path', () => {
    const p = path.join(dir, 'does-not-exist.safetensors');
    expect(() => loadSafetensors(p)).toThrow(`${p}: cannot open safetensors file`);
  });

  test('nothing is half-loaded: a tensor libtorch cannot create disposes those already created', () => {
    // Valid for the format (0 elements, as Python's reader agrees) but libtorch's strides overflow.
    const p = writeRaw('half.safetensors', {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [0, 2 ** 40, 2 ** 40], data_offsets: [8, 8] },
    }, f32(2));
    const base = memory().liveTensors;
    expect(() => loadSafetensors(p)).toThrow(`${p}: tensor 'b' (F32 [0, 1099511627776, 1099511627776]) could not be created`);
    expect(memory().liveTensors).toBe(base);
  });
});

describe('atomic save', () => {
  const leftovers = (p: string): string[] => fs.readdirSync(path.dirname(p)).filter((f) => f.startsWith(`${path.basename(p)}.tmp-`));

  test('leaves no temporary file behind and replaces an existing file', () => tidy(() => {
    const p = path.join(dir, 'atomic.safetensors');
    saveSafetensors(p, { a: tensor([1, 2]) });
    saveSafetensors(p, { a: tensor([3, 4, 5]) });
    expect(leftovers(p)).toEqual([]);
    expect(loadSafetensors(p).a.toArray()).toEqual([3, 4, 5]);
  }));

  test('a failing save (disposed tensor, bad metadata, reserved name) leaves the old file intact', () => tidy(() => {
    const p = path.join(dir, 'keep.safetensors');
    saveSafetensors(p, { a: tensor([1, 2]) }, { v: '1' });
    const before = fs.readFileSync(p);
    const dead = tensor([9]);
    dead.dispose();
    expect(() => saveSafetensors(p, { ok: tensor([1]), dead })).toThrow("saveSafetensors: tensors['dead'] has been disposed");
    expect(() => saveSafetensors(p, { ok: tensor([1]) }, { step: 3 } as unknown as Record<string, string>)).toThrow("saveSafetensors: metadata['step'] must be a string");
    expect(() => saveSafetensors(p, { __metadata__: tensor([1]) })).toThrow(/'__metadata__' is reserved/);
    expect(() => saveSafetensors(p, { x: [1, 2] as unknown as Tensor })).toThrow("saveSafetensors: tensors['x'] must be a Tensor");
    expect(() => saveSafetensors(p, tensor([1]) as unknown as Record<string, Tensor>)).toThrow(/'tensors' must be an object mapping names to Tensors/);
    expect(fs.readFileSync(p).equals(before)).toBe(true);
    expect(leftovers(p)).toEqual([]);
  }));

  test('an unwritable destination fails with the path and removes the temporary file', () => tidy(() => {
    const p = path.join(dir, 'no-such-dir', 'x.safetensors');
    expect(() => saveSafetensors(p, { a: tensor([1]) })).toThrow(`saveSafetensors: cannot write '${p}'`);
    // Destination is a directory: the data is written, the rename fails, the temp file is removed.
    const d = path.join(dir, 'is-a-dir.safetensors');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'inner'), 'x'); // a non-empty directory cannot be replaced by rename
    expect(() => saveSafetensors(d, { a: tensor([1]) })).toThrow(`saveSafetensors: cannot write '${d}'`);
    expect(leftovers(d)).toEqual([]);
  }));
});

const hasPython = spawnSync('python3', ['-c', 'import safetensors, numpy'], { stdio: 'ignore' }).status === 0;

describe('Python reads our files', () => {
  test.skipIf(!hasPython)('safetensors.deserialize / numpy.load_file / safe_open read what saveSafetensors wrote', () => tidy(() => {
    const p = path.join(dir, 'for-python.safetensors');
    const src: Record<string, Tensor> = {};
    for (const dt of DTYPES) {
      src[`${dt}.m`] = sample(dt);
      src[`${dt}.s`] = sample(dt).reshape([-1]).select(0, 4);
      src[`${dt}.e`] = zeros([3, 0], { dtype: dt });
    }
    src['f32.special'] = fromBytes(new Uint8Array(new Float32Array([NaN, Infinity, -0, 1e-45]).buffer), [4], 'float32');
    saveSafetensors(p, src, { format: 'pt', who: 'llmrl' });
    const noBf16 = path.join(dir, 'for-numpy.safetensors');
    saveSafetensors(noBf16, Object.fromEntries(Object.entries(src).filter(([k]) => !k.startsWith('bfloat16'))));
    // deserialize is the Rust reader itself and returns raw bytes, so it covers BF16 (numpy has none).
    const script = `
import json, sys, safetensors
from safetensors import safe_open
from safetensors.numpy import load_file
out = {n: {"dtype": v["dtype"], "shape": list(v["shape"]), "hex": bytes(v["data"]).hex()} for n, v in safetensors.deserialize(open(sys.argv[1], "rb").read())}
with safe_open(sys.argv[1], framework="np") as f:
    meta = f.metadata()
arrays = load_file(sys.argv[2])
np_info = {n: [a.dtype.name, list(a.shape), a.tobytes().hex()] for n, a in arrays.items()}
print(json.dumps({"tensors": out, "metadata": meta, "numpy": np_info}))
`;
    const r = spawnSync('python3', ['-c', script, p, noBf16], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as { tensors: Record<string, { dtype: string; shape: number[]; hex: string }>; metadata: Record<string, string>; numpy: Record<string, [string, number[], string]> };
    expect(got.metadata).toEqual({ format: 'pt', who: 'llmrl' });
    const ST: Record<DType, string> = { float32: 'F32', float64: 'F64', bfloat16: 'BF16', float16: 'F16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL' };
    expect(Object.keys(got.tensors).sort()).toEqual(Object.keys(src).sort());
    for (const [k, t] of Object.entries(src)) {
      expect(got.tensors[k], k).toEqual({ dtype: ST[t.dtype], shape: t.shape, hex: hex(t) });
      if (t.dtype !== 'bfloat16') {
        const npName = t.dtype === 'bool' ? 'bool' : t.dtype;
        expect(got.numpy[k], k).toEqual([npName, t.shape, hex(t)]);
      }
    }
  }));
});
