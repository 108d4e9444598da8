import fs from 'node:fs';
import { expect, test } from 'vitest';
import { additionTask, rlDemo } from '../../src/cli/rldemo.js';

test('additionTask: disjoint train / held-out prompts with answers', () => {
  const { train, test: held } = additionTask(0, 50);
  expect(held).toHaveLength(50);
  expect(train.length + held.length).toBe(90 * 90);
  const seen = new Set(train.map((r) => r.prompt));
  expect(held.some((r) => seen.has(r.prompt))).toBe(false);
  expect(held[0].answer).toBe(String(eval(String(held[0].prompt).slice(0, -1)) as number));
});

test('llmrl demo --quick: SFT then PPO (with a reward model), DPO, GRPO, GSPO from the same checkpoint; table and report.html', async () => {
  const lines: string[] = [];
  const res = await rlDemo({ quick: true, log: (l) => lines.push(l) });
  expect(res.methods.map((m) => m.method)).toEqual(['PPO (RM)', 'DPO', 'GRPO', 'GSPO']);
  for (const m of res.methods) {
    expect(m.metrics.length).toBe(2);
    expect(m.accuracyBefore).toBe(res.sftAccuracy);
    expect(m.klToSft).toBeGreaterThanOrEqual(0); // k3 per sequence: never negative
    expect(Number.isFinite(m.klToSft)).toBe(true);
    expect(m.accuracyAfter).toBeGreaterThanOrEqual(0);
  }
  // PPO trains on the reward model's score and tracks the exact-answer reward with weight 0.
  const ppo = res.methods[0].metrics;
  for (const k of ['reward/model', 'reward/accuracy', 'kl/mean', 'value/loss']) expect(ppo.every((x) => Number.isFinite(x[k])), k).toBe(true);
  for (const x of ppo) expect(x['reward/mean']).toBeCloseTo(x['reward/model'], 5);
  expect(lines.join('\n')).toMatch(/reward model: \d+ labelled pairs, held-out pair accuracy [\d.]+%/);
  expect(lines.join('\n')).toMatch(/method\s+acc before\s+acc after\s+mean reward\s+KL to SFT\s+wall s\s+tokens\/s/);
  const html = fs.readFileSync(res.report, 'utf8');
  for (const s of ['PPO (RM)', 'DPO', 'GRPO', 'GSPO', '<svg', 'Accuracy of the sampled completions', 'Reward-model score (PPO)']) expect(html).toContain(s);
}, 300_000);

test('llmrl demo --quick --out DIR through the CLI; the MLP demo stays as demo --mlp', async () => {
  const { main } = await import('../../src/cli/main.js');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-demo-cli-'));
  const out: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  try {
    expect(await main(['demo', '--quick', '--out', dir])).toBe(0);
    expect(fs.existsSync(path.join(dir, 'report.html'))).toBe(true);
    expect(await main(['demo', '--mlp', '--steps', '20'])).toBe(0);
  } finally {
    console.log = orig;
  }
  expect(out.join('\n')).toMatch(/GSPO/);
  expect(out.join('\n')).toMatch(/MLP/);
}, 300_000);

test('llmrl demo at its full budget (seed 0, as npm start): every RL method lifts held-out accuracy over the SFT start, none to 100%', async () => {
  const res = await rlDemo({ log: () => {} });
  expect(res.sftAccuracy).toBeGreaterThan(0.1); // SFT stopped at a modest accuracy (dev target 20%)
  expect(res.sftAccuracy).toBeLessThan(0.5);
  expect(res.methods.map((m) => m.method)).toEqual(['PPO (RM)', 'DPO', 'GRPO', 'GSPO']);
  for (const m of res.methods) {
    expect(m.accuracyAfter, m.method).toBeGreaterThan(res.sftAccuracy);
    expect(m.accuracyAfter, m.method).toBeLessThan(1);
    expect(m.metrics).toHaveLength(600);
  }
}, 1_200_000);
