// Generation and forward throughput of llmrl's causal LMs against Hugging Face transformers on the
// same model config, same machine, same thread count and allocator setting (DESIGN.md: benchmarks
// compare like with like). Default config (issue 4): Llama-style, hidden 512, 8 layers, 8 heads,
// intermediate 1376, vocab 32000, float32, random weights; batch 8, prompt 32, 64 new tokens, greedy
// with no EOS (every row makes all 64 tokens).
//   generation tokens/s = B · newTokens / time of one generate() (prefill included)
//   forward tokens/s    = B · (prompt + newTokens) / time of one forward with full logits, no grad
// The transformers side is scripts/bench/hf_generate.py, run with the same settings when `python`
// (default $LLMRL_BENCH_PYTHON, else /tmp/benchvenv/bin/python, else python3) has torch + transformers.
// Run: node dist/bench/generate.js [--python <path>] [--threads N] [--repeats N] [--json]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { getNumThreads, inferenceMode, randint, setNumThreads, tidy } from '../tensor/index.js';
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
  /** libtorch intra-op threads for both sides (default: the current setting, i.e. the core count). */
  threads?: number;
  /** Python with torch + transformers for the baseline; null skips it. */
  python?: string | null;
}

export interface GenerateBenchResult {
  config: Required<Omit<BenchGenerateOptions, 'python' | 'threads'>>;
  machine: string;
  threads: number;
  llmrl: SideResult;
  transformers: (SideResult & { version: string; torch: string }) | null;
  /** llmrl / transformers tokens per second (> 1: llmrl faster), by wall time and by CPU time. */
  ratio: { generate: number; forward: number; generateCpu: number; forwardCpu: number } | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median wall seconds and median process CPU seconds (user + sys) of `fn`, after one warm-up run.
 *  CPU time is the load-robust figure on a shared machine when running one thread. */
function timed(fn: () => void, repeats: number): { wall: number; cpu: number } {
  // tidy keeps what its function returns: wrap so every tensor of a run is freed before the next.
  const run = () => { tidy(() => { fn(); }); };
  run(); // warm-up (allocator, oneDNN primitives)
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    run();
    wall.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

interface SideResult {
  generateSeconds: number; generateTokensPerSec: number; forwardSeconds: number; forwardTokensPerSec: number;
  /** Process CPU seconds per run (user + sys). */
  generateCpuSeconds: number; forwardCpuSeconds: number;
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
  if (opts.threads !== undefined) setNumThreads(opts.threads);
  const model = createCausalLM(hf, { seed: 0 });
  const { batch: B, promptLength: P, newTokens: N } = config;
  let gen = { wall: 0, cpu: 0 };
  let fwd = { wall: 0, cpu: 0 };
  try {
    const prompt = randint(3, config.vocabSize, [B, P]);
    const seq = randint(3, config.vocabSize, [B, P + N]);
    gen = timed(() => {
      const out = model.generate(prompt, { maxNewTokens: N, eosTokenId: null });
      if (out.completionIds.shape[1] !== N) throw new Error('benchGenerate: generation stopped early');
    }, config.repeats);
    fwd = timed(() => { inferenceMode(() => model.forward(seq)); }, config.repeats);
    prompt.dispose();
    seq.dispose();
  } finally {
    model.dispose();
  }
  const threads = getNumThreads();
  const llmrl: SideResult = {
    generateSeconds: gen.wall, generateTokensPerSec: (B * N) / gen.wall, forwardSeconds: fwd.wall, forwardTokensPerSec: (B * (P + N)) / fwd.wall,
    generateCpuSeconds: gen.cpu, forwardCpuSeconds: fwd.cpu,
  };
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
      generateCpu: transformers.generateCpuSeconds / llmrl.generateCpuSeconds,
      forwardCpu: transformers.forwardCpuSeconds / llmrl.forwardCpuSeconds,
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
    row('generate, by CPU time (new tokens per CPU-second)', (c.batch * c.newTokens) / r.llmrl.generateCpuSeconds,
      t ? (c.batch * c.newTokens) / t.generateCpuSeconds : undefined, r.ratio?.generateCpu),
    row('forward, by CPU time (tokens per CPU-second)', (c.batch * (c.promptLength + c.newTokens)) / r.llmrl.forwardCpuSeconds,
      t ? (c.batch * (c.promptLength + c.newTokens)) / t.forwardCpuSeconds : undefined, r.ratio?.forwardCpu),
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const arg = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
  const num = (name: string) => (arg(name) === undefined ? undefined : Number(arg(name)));
  const r = benchGenerate({ python: arg('--python'), threads: num('--threads'), repeats: num('--repeats') });
  console.log(args.includes('--json') ? JSON.stringify(r, null, 2) : formatGenerateBench(r));
}
