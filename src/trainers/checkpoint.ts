// Checkpoints: everything a run needs to continue exactly — model weights as Hugging Face folders,
// optimiser state and the RNG state as safetensors, scheduler / data position / step / resolved config
// as JSON. Written to a temporary folder and renamed into place, so a finished checkpoint is never lost
// or half-written (DESIGN.md "Errors").
import fs from 'node:fs';
import path from 'node:path';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { Optimizer, OptimizerStateDict } from '../optim/optimizer.js';
import type { LambdaLR, SchedulerStateDict } from '../optim/schedulers.js';
import { getRngState, setRngState, type Tensor } from '../tensor/index.js';

export interface TrainerState {
  step: number;
  scheduler: SchedulerStateDict | null;
  /** Opaque data-loader position (see src/data). */
  data: unknown;
  config: unknown;
  /** Anything else the trainer needs (e.g. the adaptive KL coefficient). */
  extra: Record<string, unknown>;
}

export interface SavableModel {
  save(dir: string): void;
}

export interface CheckpointParts {
  /** Named models, each saved as a Hugging Face folder under its name (e.g. { model, value_model }). */
  models: Record<string, SavableModel>;
  /** Saved into every model folder, so each is a complete Hugging Face folder (as transformers' Trainer does). */
  tokenizer?: SavableModel | null;
  optimizer: Optimizer;
  scheduler: LambdaLR | null;
  state: Omit<TrainerState, 'scheduler'>;
}

export function checkpointDir(outputDir: string, step: number): string {
  return path.join(outputDir, `checkpoint-${step}`);
}

/** Saves a checkpoint atomically; returns its folder. */
export function saveCheckpoint(outputDir: string, parts: CheckpointParts): string {
  const final = checkpointDir(outputDir, parts.state.step);
  const tmp = `${final}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    for (const [name, m] of Object.entries(parts.models)) {
      m.save(path.join(tmp, name));
      parts.tokenizer?.save(path.join(tmp, name));
    }
    const sd = parts.optimizer.stateDict();
    const tensors: Record<string, Tensor> = {};
    const scalars: Record<string, number>[] = [];
    sd.state.forEach((s, i) => {
      const nums: Record<string, number> = {};
      if (s) for (const [k, v] of Object.entries(s)) {
        if (typeof v === 'number') nums[k] = v;
        else tensors[`state.${i}.${k}`] = v as Tensor;
      }
      scalars.push(s ? nums : (null as unknown as Record<string, number>));
    });
    tensors.rng = getRngState();
    try {
      saveSafetensors(path.join(tmp, 'optimizer.safetensors'), tensors);
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
    const state: TrainerState = { ...parts.state, scheduler: parts.scheduler ? parts.scheduler.stateDict() : null };
    fs.writeFileSync(path.join(tmp, 'trainer_state.json'), JSON.stringify({ ...state, optimizer: { scalars, lrs: sd.lrs } }, null, 2));
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    return final;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Reads a checkpoint's trainer state and restores optimiser, scheduler and RNG state in place. */
export function loadCheckpoint(dir: string, optimizer: Optimizer, scheduler: LambdaLR | null): TrainerState {
  const stateFile = path.join(dir, 'trainer_state.json');
  if (!fs.existsSync(stateFile)) throw new Error(`resumeFrom: ${dir} is not an llmrl checkpoint (no trainer_state.json)`);
  const raw = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as TrainerState & { optimizer: { scalars: (Record<string, number> | null)[]; lrs: number[] } };
  const tensors = loadSafetensors(path.join(dir, 'optimizer.safetensors'));
  try {
    const state: OptimizerStateDict['state'] = raw.optimizer.scalars.map((nums, i) => {
      if (!nums) return null;
      const entry: Record<string, Tensor | number> = { ...nums };
      for (const [k, t] of Object.entries(tensors)) {
        const m = /^state\.(\d+)\.(.+)$/.exec(k);
        if (m && Number(m[1]) === i) entry[m[2]] = t;
      }
      return entry;
    }) as OptimizerStateDict['state'];
    optimizer.loadStateDict({ state, lrs: raw.optimizer.lrs } as OptimizerStateDict);
    if (scheduler && raw.scheduler) scheduler.loadStateDict(raw.scheduler);
    if (tensors.rng) setRngState(tensors.rng);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  return raw;
}

/** The newest `checkpoint-N` folder in `outputDir`, or null. */
export function latestCheckpoint(outputDir: string): string | null {
  if (!fs.existsSync(outputDir)) return null;
  const steps = fs.readdirSync(outputDir).map((f) => /^checkpoint-(\d+)$/.exec(f)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1]));
  return steps.length ? checkpointDir(outputDir, Math.max(...steps)) : null;
}

