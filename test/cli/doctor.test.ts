import { afterEach, expect, test, vi } from 'vitest';
import { doctor } from '../../src/cli/doctor.js';

afterEach(() => vi.restoreAllMocks());

test('llmrl doctor reports libtorch, the addon, the fused ops and CUDA', async () => {
  const lines: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((s: string) => { lines.push(s); });
  const ok = await doctor({ json: true });
  const report = JSON.parse(lines.join('\n')) as { ok: boolean; checks: { name: string; ok: boolean; detail: string }[] };
  const byName = new Map(report.checks.map((c) => [c.name, c]));
  expect(ok).toBe(true);
  expect(byName.get('libtorch')!.detail).toMatch(/^2\.\d+\.\d+.* from .* at \//);
  expect(byName.get('libtorch')!.detail).toMatch(/Tried: LLMRL_LIBTORCH/);
  expect(byName.get('addon')!.detail).toMatch(/llmrl\.node/);
  expect(byName.get('fused ops')!.ok).toBe(true);
  expect(byName.get('cuda')!.detail).toMatch(/CUDA|CPU-only/);
  expect(byName.get('smoke op')!.detail).toBe('[1,2]+[3,4] = [4,6]');
});
