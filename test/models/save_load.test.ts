// Saving and loading Hugging Face folders: save → load gives the same logits; save → transformers
// loads it with the same logits (when /tmp/benchvenv has torch + transformers); sharded checkpoints;
// dtype option; createCausalLM's init; clear errors naming the file and the tensor on bad
// checkpoints, with nothing half-loaded.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  CausalLM, Qwen2ForCausalLM, createCausalLM, createRewardModel, loadCausalLM, loadRewardModel, loadSafetensors, loadValueModel,
  memory, noGrad, saveSafetensors, tensor, tidy, readSafetensorsHeader, type Tensor,
} from '../../src/index.js';
import { CAUSAL, MODELS, PYTHON, causalRef, hasTransformers, ids, maxDiffMasked, refLogits } from './fixtures.js';

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-models-')); });
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

function copyFixture(name: string, to: string): string {
  const d = path.join(tmp, to);
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(MODELS, name, f), path.join(d, f));
  return d;
}

function logitsOf(model: CausalLM, name: string): Tensor {
  const ref = causalRef(name);
  return noGrad(() => tidy(() => model.forward(ids(ref.input_ids), { attentionMask: tensor(ref.attention_mask, { dtype: 'int64' }) }).logits));
}

/** One Python process (transformers' import is slow): for each [dir, fixture name], the logits
 *  transformers computes on that fixture's batch (positions cumsum(mask) − 1, as generate). */
function transformersLogits(jobs: [string, string][]): number[][][][] {
  const script = `
import json, sys, torch, transformers
out = []
for d, ids, mask in json.loads(sys.stdin.read()):
    m = transformers.AutoModelForCausalLM.from_pretrained(d).eval()
    ids = torch.tensor(ids); mask = torch.tensor(mask)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad(): out.append(m(ids, attention_mask=mask, position_ids=pos).logits.tolist())
print(json.dumps(out))`;
  const input = JSON.stringify(jobs.map(([d, name]) => [d, causalRef(name).input_ids, causalRef(name).attention_mask]));
  const r = spawnSync(PYTHON, ['-c', script], { input, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as number[][][][];
}

describe.each(CAUSAL)('%s', (name) => {
  test('save → load: same logits, same state dict keys as the fixture file', () => {
    const before = memory().liveTensors;
    const model = loadCausalLM(path.join(MODELS, name));
    const dir = path.join(tmp, `${name}-saved`);
    model.save(dir);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    const keys = (f: string) => Object.keys(readSafetensorsHeader(f).tensors).sort();
    expect(keys(path.join(dir, 'model.safetensors'))).toEqual(keys(path.join(MODELS, name, 'model.safetensors')));
    const again = loadCausalLM(dir);
    expect(again.constructor).toBe(model.constructor);
    tidy(() => {
      const a = logitsOf(model, name);
      const b = logitsOf(again, name);
      expect(b.sub(a).abs().max().item()).toBe(0);
    });
    model.dispose();
    again.dispose();
    expect(memory().liveTensors).toBe(before);
  });

});

test.skipIf(!hasTransformers)('save → transformers from_pretrained: same logits for all four architectures', () => {
  const models = CAUSAL.map((name) => loadCausalLM(path.join(MODELS, name)));
  const dirs = CAUSAL.map((name, i) => { const d = path.join(tmp, `${name}-for-hf`); models[i].save(d); return d; });
  const hf = transformersLogits(CAUSAL.map((name, i) => [dirs[i], name]));
  CAUSAL.forEach((name, i) => tidy(() => {
    const mask = causalRef(name).attention_mask;
    const theirs = tensor(hf[i]);
    expect(maxDiffMasked(theirs, logitsOf(models[i], name), mask)).toBeLessThanOrEqual(1e-4);
    expect(maxDiffMasked(theirs, refLogits(name), mask)).toBeLessThanOrEqual(1e-5); // same as the fixture's reference
    models[i].dispose();
  }));
});

describe('loading options', () => {
  test('dtype: bfloat16 and auto; logits stay close to float32', () => {
    const m16 = loadCausalLM(path.join(MODELS, 'llama'), { dtype: 'bfloat16' });
    expect(m16.dtype).toBe('bfloat16');
    expect(m16.parameters().every((p) => p.dtype === 'bfloat16')).toBe(true);
    const auto = loadCausalLM(path.join(MODELS, 'llama'), { dtype: 'auto' });
    expect(auto.dtype).toBe('float32'); // the fixture's config says float32
    tidy(() => {
      const a = logitsOf(m16, 'llama').float();
      const b = logitsOf(auto, 'llama');
      const scale = b.abs().max().item();
      expect(a.sub(b).abs().max().item()).toBeLessThan(0.1 * scale + 0.1);
    });
    const dir = path.join(tmp, 'llama-bf16');
    m16.save(dir);
    expect(readSafetensorsHeader(path.join(dir, 'model.safetensors')).tensors['lm_head.weight'].dtype).toBe('bfloat16');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfg.dtype).toBe('bfloat16');
    expect(loadCausalLM(dir, { dtype: 'auto' }).dtype).toBe('bfloat16');
    m16.dispose();
    auto.dispose();
  });

  test('a sharded checkpoint (model.safetensors.index.json) loads like the single file; saving over it removes the shards', () => {
    const dir = path.join(tmp, 'qwen2-sharded');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(MODELS, 'qwen2', 'config.json'), path.join(dir, 'config.json'));
    const all = loadSafetensors(path.join(MODELS, 'qwen2', 'model.safetensors'));
    const names = Object.keys(all).sort();
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((list, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      saveSafetensors(path.join(dir, file), Object.fromEntries(list.map((n) => [n, all[n]])), { format: 'pt' });
      for (const n of list) weightMap[n] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    for (const t of Object.values(all)) t.dispose();
    const a = loadCausalLM(dir);
    expect(a).toBeInstanceOf(Qwen2ForCausalLM);
    const b = loadCausalLM(path.join(MODELS, 'qwen2'));
    tidy(() => expect(logitsOf(a, 'qwen2').sub(logitsOf(b, 'qwen2')).abs().max().item()).toBe(0));
    a.save(dir);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    a.dispose();
    b.dispose();
  });

  test('original-style GPT-2 checkpoint (bare h.0.* keys, attn.bias mask buffers) loads with the same logits', () => {
    const dir = copyFixture('gpt2', 'gpt2-bare');
    const file = path.join(dir, 'model.safetensors');
    const sd = loadSafetensors(file);
    const bare: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(sd)) bare[k.replace(/^transformer\./, '')] = t;
    bare['h.0.attn.bias'] = tensor([[1]]);
    bare['h.1.attn.masked_bias'] = tensor([-1e4]);
    saveSafetensors(file, bare);
    for (const t of Object.values(bare)) t.dispose();
    const a = loadCausalLM(dir);
    const b = loadCausalLM(path.join(MODELS, 'gpt2'));
    tidy(() => expect(logitsOf(a, 'gpt2').sub(logitsOf(b, 'gpt2')).abs().max().item()).toBe(0));
    a.dispose();
    b.dispose();
  });

  test('tied embeddings: one tensor serves embed_tokens and lm_head; the file has no lm_head.weight', () => {
    const m = loadCausalLM(path.join(MODELS, 'qwen2'));
    expect(m.config.tieWordEmbeddings).toBe(true);
    expect(m.lmHeadWeight()).toBe(m.backbone.embedWeight);
    expect(Object.keys(m.stateDict())).not.toContain('lm_head.weight');
    const untied = loadCausalLM(path.join(MODELS, 'llama'));
    expect(Object.keys(untied.stateDict())).toContain('lm_head.weight');
    m.dispose();
    untied.dispose();
  });

  test('forward: logitsToKeep and hidden (final-norm) × lmHeadWeight = logits', () => tidy(() => noGrad(() => {
    const m = loadCausalLM(path.join(MODELS, 'mistral'));
    const ref = causalRef('mistral');
    const x = ids(ref.input_ids);
    const full = m.forward(x);
    const T = x.shape[1];
    const last2 = m.forward(x, { logitsToKeep: 2 });
    expect(last2.logits.shape).toEqual([3, 2, m.config.vocabSize]);
    expect(last2.logits.sub(full.logits.narrow(1, T - 2, 2)).abs().max().item()).toBeLessThan(1e-5);
    const none = m.forward(x, { logitsToKeep: 0 });
    expect(none.logits.shape).toEqual([3, 0, m.config.vocabSize]);
    expect(none.hidden.shape).toEqual([3, T, m.config.hiddenSize]);
    expect(none.hidden.matmul(m.lmHeadWeight().t()).sub(full.logits).abs().max().item()).toBeLessThan(1e-5);
    expect(() => m.forward(x, { logitsToKeep: -1 })).toThrow(/logitsToKeep/);
    m.dispose();
  })));
});

describe('createCausalLM', () => {
  const cfg = {
    model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, initializer_range: 0.02, pad_token_id: 0, tie_word_embeddings: true,
  };
  test('HF-style init: N(0, initializer_range) weights, unit norms, zero padding row; seeded', () => {
    const a = createCausalLM(cfg, { seed: 1 });
    const b = createCausalLM(cfg, { seed: 1 });
    tidy(() => {
      const q = a.stateDict()['model.layers.0.self_attn.q_proj.weight'];
      expect(Math.abs(q.std().item() - 0.02)).toBeLessThan(0.004);
      expect(a.stateDict()['model.norm.weight'].sub(1).abs().max().item()).toBe(0);
      expect(a.backbone.embedWeight.select(0, 0).abs().max().item()).toBe(0);
      expect(b.stateDict()['model.layers.1.mlp.up_proj.weight'].sub(a.stateDict()['model.layers.1.mlp.up_proj.weight']).abs().max().item()).toBe(0);
    });
    expect(a.architecture).toBe('LlamaForCausalLM');
    expect(a.numParameters()).toBe(64 * 32 + 2 * (32 * 32 * 2 + 16 * 32 * 2 + 3 * 32 * 48 + 2 * 32) + 32);
    a.dispose();
    b.dispose();
  });

  test.skipIf(!hasTransformers)('a created GPT-2 and a created Qwen2 (llama3 rope, untied) save into folders transformers loads with the same logits', () => {
    const gpt2 = createCausalLM({ model_type: 'gpt2', vocab_size: 96, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 64, initializer_range: 0.3 }, { seed: 2 });
    const qwen = createCausalLM({
      architectures: ['Qwen2ForCausalLM'], vocab_size: 150, hidden_size: 48, intermediate_size: 64, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, initializer_range: 0.3, tie_word_embeddings: false,
      rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 128 },
    }, { seed: 3 });
    const jobs: [CausalLM, string][] = [[gpt2, 'gpt2'], [qwen, 'qwen2']];
    const dirs = jobs.map(([m, name]) => { const d = path.join(tmp, `created-${name}`); m.save(d); return d; });
    const hf = transformersLogits(jobs.map(([, name], i) => [dirs[i], name]));
    jobs.forEach(([m, name], i) => {
      tidy(() => expect(maxDiffMasked(tensor(hf[i]), logitsOf(m, name), causalRef(name).attention_mask)).toBeLessThanOrEqual(1e-4));
      m.dispose();
    });
  });
});

describe('bad checkpoints fail clearly and load nothing', () => {
  function expectFails(dir: string, re: RegExp, load: (d: string) => unknown = loadCausalLM): void {
    const before = memory();
    expect(() => load(dir)).toThrow(re);
    const after = memory();
    expect(after.liveTensors).toBe(before.liveTensors);
    expect(after.bytes.cpu).toBe(before.bytes.cpu);
  }

  test('missing tensor: names model.safetensors and the tensor', () => {
    const dir = copyFixture('llama', 'missing');
    const file = path.join(dir, 'model.safetensors');
    const sd = loadSafetensors(file);
    sd['model.layers.1.mlp.up_proj.weight'].dispose();
    delete sd['model.layers.1.mlp.up_proj.weight'];
    saveSafetensors(file, sd);
    for (const t of Object.values(sd)) t.dispose();
    expectFails(dir, /model\.safetensors: missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'/);
  });

  test('wrong shape: names the file, the tensor and both shapes', () => {
    const dir = copyFixture('gpt2', 'shape');
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), n_inner: 64 }));
    expectFails(dir, /model\.safetensors: tensor 'transformer\.h\.0\.mlp\.c_fc\.(weight|bias)' has shape \[(32, )?128\] but the model built from .*config\.json needs \[(32, )?64\]/);
  });

  test('unexpected tensor: named (strict by default), ignored with strict: false', () => {
    const dir = copyFixture('mistral', 'extra');
    const file = path.join(dir, 'model.safetensors');
    const sd = loadSafetensors(file);
    sd['model.layers.0.self_attn.extra.weight'] = tensor([1, 2]);
    saveSafetensors(file, sd);
    for (const t of Object.values(sd)) t.dispose();
    expectFails(dir, /model\.safetensors: unexpected tensor 'model\.layers\.0\.self_attn\.extra\.weight'/);
    loadCausalLM(dir, { strict: false }).dispose();
  });

  test('unknown architecture / model_type: names config.json and lists what is supported', () => {
    const dir = copyFixture('qwen2', 'arch');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['FalconForCausalLM'], model_type: 'falcon' }));
    expectFails(dir, /config\.json: unsupported architecture 'FalconForCausalLM'.*LlamaForCausalLM/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: undefined, model_type: 'falcon' }));
    expectFails(dir, /config\.json: unsupported model_type "falcon"/);
  });

  test('corrupt safetensors header: names the file; a bad entry names the tensor', () => {
    const dir = copyFixture('qwen2', 'corrupt');
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + n).toString('utf8');
    const broken = Buffer.from(bytes);
    broken.write('@', 8); // no longer JSON
    fs.writeFileSync(file, broken);
    expectFails(dir, /model\.safetensors: header is not valid JSON/);
    const bad = header.replace(/("model\.norm\.weight":\{"dtype":")F32/, '$1Q99');
    const b2 = Buffer.from(bytes);
    b2.write(bad, 8);
    fs.writeFileSync(file, b2);
    expectFails(dir, /model\.safetensors: tensor 'model\.norm\.weight' has unknown dtype "Q99"/);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100)); // truncated data
    expectFails(dir, /model\.safetensors: .*truncated/);
  });

  test('missing config.json or weights: says what the folder needs', () => {
    const dir = path.join(tmp, 'empty');
    fs.mkdirSync(dir, { recursive: true });
    expectFails(dir, /config\.json: not found/);
    fs.copyFileSync(path.join(MODELS, 'llama', 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
    expectFails(dir, /no model\.safetensors .*pytorch_model\.bin.*safetensors only/);
  });

  test('a reward checkpoint is not a causal LM, and vice versa without initScoreHead', () => {
    expectFails(path.join(MODELS, 'qwen2-reward'), /sequence-classification .*loadRewardModel/);
    expectFails(path.join(MODELS, 'qwen2'), /causal LM without a score head.*initScoreHead/, loadRewardModel);
  });
});

describe('value model from a causal LM', () => {
  test('backbone weights from the checkpoint, a fresh score head; saves as *ForSequenceClassification', () => {
    const v = loadValueModel(path.join(MODELS, 'qwen2'));
    const lm = loadCausalLM(path.join(MODELS, 'qwen2'));
    tidy(() => {
      expect(v.backbone.embedWeight.sub(lm.backbone.embedWeight).abs().max().item()).toBe(0);
      expect(v.scoreHead.weight.shape).toEqual([1, 48]);
      const ref = causalRef('qwen2');
      const out = noGrad(() => v.forward(ids(ref.input_ids), { attentionMask: tensor(ref.attention_mask, { dtype: 'int64' }) }));
      expect(out.values.shape).toEqual([3, ref.input_ids[0].length]);
    });
    const dir = path.join(tmp, 'value');
    v.save(dir);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).architectures).toEqual(['Qwen2ForSequenceClassification']);
    const again = loadRewardModel(dir);
    tidy(() => expect(again.scoreHead.weight.sub(v.scoreHead.weight).abs().max().item()).toBe(0));
    const r = createRewardModel({ model_type: 'gpt2', vocab_size: 50, n_embd: 16, n_layer: 1, n_head: 2, n_positions: 32 }, { seed: 0 });
    expect(r.architecture).toBe('GPT2ForSequenceClassification');
    for (const m of [v, lm, again, r]) m.dispose();
  });
});
