// Generation and forward throughput of llmrl's causal LMs against Hugging Face transformers on the
// same model config, same machine, same thread count and allocator setting (DESIGN.md: benchmarks
// compare like with like). Default config (issue 4): Llama-style, hidden 512, 8 layers, 8 heads,
// intermediate 1376, vocab 32000, float32, random weights; batch 8, prompt 32, 64 new tokens, greedy
// with no EOS (every row makes all 64 tokens).
//   generation tokens/s = B · newTokens / time of one generate() (prefill included)
//   forward tokens/s    = B · (prompt + newTokens) / time of one forward with full logits, no grad
// The transformers side is scripts/bench/hf_generate.py, run with the same settings when `python`
// (default $LLMRL_BENCH_PYTHON, else /tmp/benchvenv/bin/python, else python3) has torch + transformers.
// Run: node dist/bench/generate.js [--python <path>] [--json]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { getNumThreads, inferenceMode, randint, tidy } from '../tensor/index.js';
import { createCausalLM } from '../models/load.js';
import { machineLine } from './harness.js';

export interface BenchGenerateOptions {
  hiddenSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  intermediateSize?: number;
  vocabSize?: number;
  batch?: number;
  promptLength?: number;
  newTokens?: number;
  /** Timed repeats (median reported); default 3. */
  repeats?: number;
  /** Python with torch + transformers for the baseline; null skips it. */
  python?: string | null;
}

export interface GenerateBenchResult {
  config: Required<Omit<BenchGenerateOptions, 'python'>>;
  machine: string;
  threads: number;
  llmrl: { generateSeconds: number; generateTokensPerSec: number; forwardSeconds: number; forwardTokensPerSec: number };
  transformers: { generateSeconds: number; generateTokensPerSec: number; forwardSeconds: number; forwardTokensPerSec: number; version: string; torch: string } | null;
  /** llmrl / transformers tokens per second (> 1: llmrl faster). */
  ratio: { generate: number; forward: number } | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timed(fn: () => void, repeats: number): number {
  tidy(fn); // warm-up (allocator, oneDNN primitives)
  const out: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    tidy(fn);
    out.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(out);
}

function findPython(explicit: string | null | undefined): string | null {
  if (explicit === null) return null;
  const candidates = [explicit, process.env.LLMRL_BENCH_PYTHON, '/tmp/benchvenv/bin/python', 'python3'].filter(Boolean) as string[];
  for (const py of candidates) {
    try {
      execFileSync(py, ['-c', 'import torch, transformers'], { stdio: 'ignore' });
      return py;
    } catch { /* next */ }
  }
  return null;
}

/** Measures llmrl (and transformers, when available) on the configured model; see the file header. */
export function benchGenerate(opts: BenchGenerateOptions = {}): GenerateBenchResult {
  const config = {
    hiddenSize: opts.hiddenSize ?? 512, numLayers: opts.numLayers ?? 8, numHeads: opts.numHeads ?? 8,
    numKvHeads: opts.numKvHeads ?? opts.numHeads ?? 8, intermediateSize: opts.intermediateSize ?? 1376,
    vocabSize: opts.vocabSize ?? 32000, batch: opts.batch ?? 8, promptLength: opts.promptLength ?? 32,
    newTokens: opts.newTokens ?? 64, repeats: opts.repeats ?? 3,
  };
  const hf = {
    model_type: 'llama', vocab_size: config.vocabSize, hidden_size: config.hiddenSize, intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers, num_attention_heads: config.numHeads, num_key_value_heads: config.numKvHeads,
    max_position_embeddings: 2048, tie_word_embeddings: false,
  };
  const model = createCausalLM(hf, { seed: 0 });
  const { batch: B, promptLength: P, newTokens: N } = config;
  let gen = 0;
  let fwd = 0;
  try {
    const prompt = randint(3, config.vocabSize, [B, P]);
    const seq = randint(3, config.vocabSize, [B, P + N]);
    gen = timed(() => {
      const out = model.generate(prompt, { maxNewTokens: N, eosTokenId: null });
      if (out.completionIds.shape[1] !== N) throw new Error('benchGenerate: generation stopped early');
    }, config.repeats);
    fwd = timed(() => inferenceMode(() => model.forward(seq)), config.repeats);
    prompt.dispose();
    seq.dispose();
  } finally {
    model.dispose();
  }
  const threads = getNumThreads();
  const llmrl = { generateSeconds: gen, generateTokensPerSec: (B * N) / gen, forwardSeconds: fwd, forwardTokensPerSec: (B * (P + N)) / fwd };
  let transformers: GenerateBenchResult['transformers'] = null;
  const py = findPython(opts.python);
  if (py) {
    // src/bench or dist/bench → package root; else the working directory (a checkout).
    const script = [path.join(here, '..', '..', 'scripts', 'bench', 'hf_generate.py'), path.join(process.cwd(), 'scripts', 'bench', 'hf_generate.py')]
      .find((p) => fs.existsSync(p));
    if (script) {
      const out = execFileSync(py, [script, '--json', '--threads', String(threads), '--hidden', String(config.hiddenSize),
        '--layers', String(config.numLayers), '--heads', String(config.numHeads), '--kv-heads', String(config.numKvHeads),
        '--intermediate', String(config.intermediateSize), '--vocab', String(config.vocabSize), '--batch', String(B),
        '--prompt', String(P), '--new', String(N), '--repeats', String(config.repeats)],
      { encoding: 'utf8', env: { ...process.env }, stdio: ['ignore', 'pipe', 'ignore'] });
      transformers = JSON.parse(out.trim().split('\n').at(-1)!) as GenerateBenchResult['transformers'];
    }
  }
  return {
    config, machine: machineLine(), threads, llmrl, transformers,
    ratio: transformers ? {
      generate: llmrl.generateTokensPerSec / transformers.generateTokensPerSec,
      forward: llmrl.forwardTokensPerSec / transformers.forwardTokensPerSec,
    } : null,
  };
}

/** The result as a Markdown table. */
export function formatGenerateBench(r: GenerateBenchResult): string {
  const c = r.config;
  const t = r.transformers;
  const row = (what: string, ours: number, theirs: number | undefined, ratio: number | undefined) =>
    `| ${what} | ${ours.toFixed(0)} | ${theirs === undefined ? 'n/a' : theirs.toFixed(0)} | ${ratio === undefined ? 'n/a' : `${ratio.toFixed(2)}×`} |`;
  return [
    `Machine: ${r.machine}`,
    `Model: Llama-style, hidden ${c.hiddenSize}, ${c.numLayers} layers, ${c.numHeads} heads (${c.numKvHeads} kv), intermediate ${c.intermediateSize}, vocab ${c.vocabSize}, float32; batch ${c.batch}, prompt ${c.promptLength}, ${c.newTokens} new tokens (greedy, no EOS); median of ${c.repeats}.`,
    t ? `Baseline: transformers ${t.version}, torch ${t.torch}, same thread count and THP setting.` : 'Baseline: transformers not available.',
    '',
    '| tokens/s | llmrl | transformers | llmrl / transformers |',
    '|---|---:|---:|---:|',
    row('generate (new tokens/s)', r.llmrl.generateTokensPerSec, t?.generateTokensPerSec, r.ratio?.generate),
    row('forward (tokens/s, full logits, no grad)', r.llmrl.forwardTokensPerSec, t?.forwardTokensPerSec, r.ratio?.forward),
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const pyIdx = args.indexOf('--python');
  const r = benchGenerate({ python: pyIdx >= 0 ? args[pyIdx + 1] : undefined });
  console.log(args.includes('--json') ? JSON.stringify(r, null, 2) : formatGenerateBench(r));
}
