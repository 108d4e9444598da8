// Error translation at the N-API boundary, checked in child processes so the environment
// (LLMRL_DEBUG) is read fresh: no C++ backtrace by default, the full one when asked for.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, test } from 'vitest';
import { loadReport, native } from '../../src/native/addon.js';

function failingMatmul(env: Record<string, string>): string {
  native(); // resolves which addon file this process uses, so the child loads the same one
  const addon = loadReport.addonPath!;
  const script = `
    const n = require(${JSON.stringify(addon)});
    const a = n.fromBuffer(new Float32Array(6), [2, 3], n.dtypes.float32);
    try { n.call(n.opHandle('aten::matmul', ''), a, a); } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }
    console.log('still running');`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env }, cwd: path.dirname(addon) });
  expect(r.status).toBe(0);
  return r.stdout;
}

test('c10::Error becomes a TorchError without a C++ backtrace', () => {
  const out = failingMatmul({ LLMRL_DEBUG: '' });
  const err = JSON.parse(out.split('\n')[0]);
  expect(err.name).toBe('TorchError');
  expect(err.message).toMatch(/^aten::matmul: mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
  expect(err.message).not.toMatch(/Exception raised from/);
  expect(out).toMatch(/still running/);
});

test('LLMRL_DEBUG=1 adds the C++ backtrace', () => {
  const err = JSON.parse(failingMatmul({ LLMRL_DEBUG: '1' }).split('\n')[0]);
  expect(err.message).toMatch(/Exception raised from/);
});
