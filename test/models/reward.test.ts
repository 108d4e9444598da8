// Reward / value heads: scores equal transformers' *ForSequenceClassification on the fixtures
// (right- and left-padded batches), per-token values, save → load, save → transformers.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RewardModel, loadRewardModel, memory, noGrad, tensor, tidy } from '../../src/index.js';
import { MODELS, PYTHON, hasTransformers, ids } from './fixtures.js';

interface RewardRef {
  architecture: string;
  right: { input_ids: number[][]; attention_mask: number[][]; scores: number[]; values: number[][] };
  left: { input_ids: number[][]; attention_mask: number[][]; position_ids: number[][]; scores: number[] };
}
const REWARD = ['qwen2-reward', 'gpt2-reward'] as const;
const refOf = (name: string) => JSON.parse(fs.readFileSync(path.join(MODELS, name, 'reference.json'), 'utf8')) as RewardRef;
const maxAbs = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-reward-')); });
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

function scores(rm: RewardModel, batch: { input_ids: number[][]; attention_mask: number[][] }): number[] {
  return tidy(() => noGrad(() => rm.score(ids(batch.input_ids), { attentionMask: tensor(batch.attention_mask, { dtype: 'int64' }) }).toArray() as number[]));
}

describe.each(REWARD)('%s', (name) => {
  test('scores equal transformers\' (right and left padding), values per token', () => {
    const before = memory().liveTensors;
    const rm = loadRewardModel(path.join(MODELS, name));
    const ref = refOf(name);
    expect(rm.architecture).toBe(ref.architecture);
    const right = scores(rm, ref.right);
    const left = scores(rm, ref.left);
    console.log(`${name}: max |score − transformers| right ${maxAbs(right, ref.right.scores).toExponential(2)}, left ${maxAbs(left, ref.left.scores).toExponential(2)}`);
    expect(maxAbs(right, ref.right.scores)).toBeLessThanOrEqual(1e-5);
    expect(maxAbs(left, ref.left.scores)).toBeLessThanOrEqual(1e-5);
    // Without a mask the pad id (config pad_token_id 0) finds the last real token, as transformers does.
    const noMask = tidy(() => noGrad(() => rm.score(ids(ref.right.input_ids)).toArray() as number[]));
    expect(maxAbs(noMask, ref.right.scores)).toBeLessThanOrEqual(1e-5);
    tidy(() => noGrad(() => {
      const { values, hidden } = rm.forward(ids(ref.right.input_ids), { attentionMask: tensor(ref.right.attention_mask, { dtype: 'int64' }) });
      expect(values.shape).toEqual([3, ref.right.input_ids[0].length]);
      expect(hidden.shape[2]).toBe(rm.config.hiddenSize);
      const v = values.toArray() as number[][];
      ref.right.attention_mask.forEach((row, b) => row.forEach((m, t) => { if (m) expect(Math.abs(v[b][t] - ref.right.values[b][t])).toBeLessThan(1e-5); }));
    }));
    rm.dispose();
    expect(memory().liveTensors).toBe(before);
  });

  test('save → load → same scores', () => {
    const rm = loadRewardModel(path.join(MODELS, name));
    const dir = path.join(tmp, name);
    rm.save(dir);
    const again = loadRewardModel(dir);
    const ref = refOf(name);
    expect(scores(again, ref.right)).toEqual(scores(rm, ref.right));
    rm.dispose();
    again.dispose();
  });
});

test.skipIf(!hasTransformers)('save → transformers AutoModelForSequenceClassification: same scores', () => {
  const dirs = REWARD.map((name) => {
    const rm = loadRewardModel(path.join(MODELS, name));
    const d = path.join(tmp, `${name}-hf`);
    rm.save(d);
    rm.dispose();
    return d;
  });
  const script = `
import json, sys, torch, transformers
out = []
for d, ids, mask in json.loads(sys.stdin.read()):
    m = transformers.AutoModelForSequenceClassification.from_pretrained(d).eval()
    with torch.no_grad(): out.append(m(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits[:, 0].tolist())
print(json.dumps(out))`;
  const input = JSON.stringify(REWARD.map((name, i) => [dirs[i], refOf(name).right.input_ids, refOf(name).right.attention_mask]));
  const r = spawnSync(PYTHON, ['-c', script], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const hf = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as number[][];
  REWARD.forEach((name, i) => expect(maxAbs(hf[i], refOf(name).right.scores)).toBeLessThanOrEqual(1e-5));
});
