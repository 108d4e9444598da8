// The llmrl command line (commander): doctor, bench, demo, train <algo>, generate, eval. `main(argv)` is importable
// (tests run it in-process); src/cli/index.ts is the executable that calls it.
import { Command, CommanderError } from 'commander';
import { doctor } from './doctor.js';
import { benchLifetime, benchOpCall } from './bench.js';
import { benchGenerate, formatGenerateBench } from '../bench/generate.js';
import { benchOps } from '../bench/ops.js';
import { demo } from './demo.js';
import { rlDemo } from './rldemo.js';
import { ALGORITHMS, trainCommand } from './train.js';
import { applyThreads, collect, intArg, numArg, runGenerate, type GenerateOptions } from './generate.js';
import { runEval, type EvalOptions } from './eval.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('llmrl')
    .description('Post-train language models with reinforcement learning (PPO, DPO, GRPO, GSPO) from Node.js, on libtorch.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('doctor')
    .description('show what llmrl found: Node, libtorch, the native addon, CUDA; with fixes for failures')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const ok = await doctor(o);
      process.exitCode = ok ? 0 : 1;
    });

  program
    .command('bench')
    .description('benchmarks: `opcall` (one small op through the binding) or `ops` (fused ops vs composed)')
    .argument('[suite]', 'opcall | ops | generate | lifetime', 'opcall')
    .option('--quick', 'small shapes (ops suite)')
    .option('--filter <text>', 'only cases whose name contains text (ops suite)')
    .option('--json', 'machine-readable output')
    .action(async (suite: string, o: { json?: boolean; quick?: boolean; filter?: string }) => {
      if (suite === 'opcall') benchOpCall(o);
      else if (suite === 'ops') await benchOps(o);
      else if (suite === 'generate') {
        const r = benchGenerate({ python: process.env.LLMRL_BENCH_PYTHON ?? 'python3' });
        console.log(o.json ? JSON.stringify(r, null, 2) : formatGenerateBench(r));
      } else if (suite === 'lifetime') await benchLifetime();
      else throw new Error(`bench: unknown suite '${suite}'; expected 'opcall', 'ops', 'generate' or 'lifetime'`);
    });

  program
    .command('demo')
    .description('the built-in demo: SFT a tiny model on 2-digit addition, then PPO (reward model), DPO, GRPO and GSPO from the same checkpoint; a table and report.html')
    .option('--quick', 'a few steps of everything (seconds; for tests)')
    .option('--out <dir>', 'folder for report.html, metrics and checkpoints (default: a temporary folder)')
    .option('--threads <n>', 'intra-op CPU threads (default 1)', (v) => Number.parseInt(v, 10))
    .option('--only <methods>', 'comma-separated subset of ppo,dpo,grpo,gspo')
    .option('--mlp', 'the earlier demo instead: an MLP fit of sin(3x)·x printing its falling loss')
    .option('--steps <n>', 'training steps (--mlp)', (v) => Number.parseInt(v, 10), 300)
    .option('--seed <n>', 'random seed', (v) => Number.parseInt(v, 10), 0)
    .action(async (o: { steps: number; seed: number; quick?: boolean; out?: string; threads?: number; mlp?: boolean; only?: string }) => {
      if (o.mlp) {
        demo(o);
        return;
      }
      await rlDemo({ quick: o.quick, seed: o.seed, outputDir: o.out, threads: o.threads, only: o.only?.split(',').map((x) => x.trim()).filter(Boolean) });
    });

  program
    .command('train')
    .description(`train a model: ${ALGORITHMS.join(' | ')} with a run config (JSON or YAML; sections model, tokenizer, dataset, rewards, rewardModel, trainer)`)
    .argument('<algorithm>', ALGORITHMS.join(' | '))
    .option('-c, --config <file>', 'run config file (.json, .yaml or .yml)')
    .option('--set <key=value>', 'override a config value, e.g. trainer.learningRate=1e-5 (repeatable; values parsed as JSON)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--resume', 'continue from the newest checkpoint in trainer.outputDir')
    .option('--json', 'one JSON line per step instead of log lines')
    .option('--describe', "list the trainer section's options with defaults and exit")
    .option('--threads <n>', 'intra-op CPU threads (1 is fastest for tiny models and on a loaded machine)', (v) => Number.parseInt(v, 10))
    .option('--no-progress', 'plain step lines even on a terminal (no progress bar)')
    .action(async (algo: string, o: { config?: string; set: string[]; resume?: boolean; json?: boolean; describe?: boolean; threads?: number; progress: boolean }) => {
      if (!o.describe && !o.config) throw new Error('train: --config <file> is required');
      applyThreads(o.threads);
      await trainCommand(algo, { config: o.config ?? '', set: o.set, resume: o.resume, json: o.json, describe: o.describe, progress: o.progress });
    });

  const gen = program
    .command('generate')
    .description('generate completions with a model folder: greedy by default, sampled with --temperature > 0')
    .requiredOption('--model <dir>', 'causal LM folder (config.json + model.safetensors + tokenizer.json)')
    .option('--prompt <text>', 'a prompt (repeatable)', collect)
    .option('--prompts-file <file>', '.jsonl/.json of {"prompt"} or {"messages"} rows, or .txt with one prompt per line')
    .option('--chat', "wrap each prompt as a user message with the tokenizer's chat template")
    .option('--system <text>', 'a system message (with --chat)')
    .option('--json', 'one JSON line per prompt {prompt, completion, tokens, finishReason}');
  withDecodingOptions(gen).action(async (o: GenerateOptions) => { await runGenerate(o); });

  const ev = program
    .command('eval')
    .description('score a model on a dataset: generate for every prompt, apply reward functions and/or a reward model, print mean/std/min/max, accuracy and pass@K')
    .requiredOption('--model <dir>', 'causal LM folder (config.json + model.safetensors + tokenizer.json)')
    .requiredOption('--dataset <file>', '.jsonl/.json of prompt rows (extra columns such as answer go to the rewards)')
    .option('--reward <spec>', 'accuracy | format | length | ./rewards.mjs#export | {"use": …} (repeatable)', collect)
    .option('--reward-model <dir>', 'reward model folder (shares the tokenizer); reported as rewardModel')
    .option('--split <name>', 'dataset split (default train)')
    .option('--limit <n>', 'first N prompts only', intArg)
    .option('--num-samples <k>', 'completions per prompt (default 1); pass@K for 0/1 rewards', intArg)
    .option('--out <file>', 'write one JSON line per (prompt, sample) with each reward')
    .option('--json', 'the summary as one JSON object');
  withDecodingOptions(ev).action(async (o: EvalOptions) => { await runEval(o); });
  return program;
}

/** The options `generate` and `eval` share: tokenizer, decoding, batching, threads. */
function withDecodingOptions(cmd: Command): Command {
  return cmd
    .option('--tokenizer <dir>', 'tokenizer folder (default: the model folder)')
    .option('--max-new-tokens <n>', 'tokens to generate at most (default 64)', intArg)
    .option('--temperature <t>', '0 = greedy (default); > 0 samples', numArg)
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg)
    .option('--top-p <p>', 'nucleus sampling mass', numArg)
    .option('--seed <n>', 'seed for sampling', intArg)
    .option('--batch-size <n>', 'prompts per generation call (default 8)', intArg)
    .option('--threads <n>', 'intra-op CPU threads', intArg);
}

/** Runs the CLI on `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    console.error(`llmrl: ${(e as Error).message}`);
    return 1;
  }
}
