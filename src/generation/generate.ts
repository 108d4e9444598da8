// Batched autoregressive generation with a KV cache, greedy or sampled, returning what RL trainers
// need: the completion tokens, their mask and the behaviour policy's log-probs (oldLogprobs).
//
//   prompts  inputIds [B, P], attentionMask [B, P] (left padding: 0s first; right padding is not
//            supported for generation — pad prompts on the left, as transformers requires too)
//   step 0   one forward over the prompts fills the cache (positions cumsum(mask) − 1), keeps only the
//            last position's logits [B, 1, V]
//   step i   one forward over the B new tokens, attending to the cache (preallocated [B, Hkv, P+N, D])
//   output   completionIds [B, L] int64, completionMask [B, L] int64, logprobs [B, L] float32,
//            L = the steps actually run (≤ maxNewTokens: generation ends early once every row is done)
// Rows stop independently: the EOS token is kept (mask 1); after it a row gets padTokenId with mask 0
// and logprob 0. A stop string ends a row the same way, at the token that completes it.
// Log-probs: log softmax(logits / temperature) at the chosen token — the temperature-scaled FULL
// distribution, before top-k / top-p truncation (what TRL and vLLM return, and what a trainer's
// forward pass recomputes: `ops.tokenLogprobs(logits, ids, { temperature })` or
// `(logits / T).logSoftmax(-1).gather(…)` matches them to float rounding). Greedy runs report them
// the same way (at `temperature`, default 1).
// Seeds: `seed` calls manualSeed(seed) first (libtorch's global generator), so the same seed, model,
// prompts and options give the same tokens. Everything runs under inferenceMode; per-step tensors are
// freed as the loop goes (memory().liveTensors returns to where it was, plus the three outputs).
import { Tensor, arange, full, inferenceMode, manualSeed, ones, tensor, tidy, type Device } from '../tensor/index.js';
import { KVCache } from './cache.js';
import { sampleTokens } from './sampling.js';

export interface GenerateOptions {
  /** `[B, P]`: 1 on prompt tokens, 0 on (left) padding. Default: all ones. */
  attentionMask?: Tensor | null;
  /** Upper bound on generated tokens per row. */
  maxNewTokens: number;
  /** Sample (true) or take the argmax (false, default). */
  doSample?: boolean;
  /** Divides the logits before sampling and for the returned log-probs (default 1; must be > 0). */
  temperature?: number;
  /** Sample among the k most likely tokens only (0 / undefined: off). */
  topK?: number | null;
  /** Sample from the smallest set of tokens with probability mass > p (1 / undefined: off). */
  topP?: number | null;
  /** Token id(s) that end a row (kept in the output). Default: the model config's eos_token_id. */
  eosTokenId?: number | number[] | null;
  /** Fills rows after they end. Default: config pad_token_id, else the first EOS id, else 0. */
  padTokenId?: number | null;
  /** End a row once its decoded completion contains one of these strings (needs `decode`). */
  stopStrings?: string[] | null;
  /** Turns token ids into text for `stopStrings`, e.g. `(ids) => tokenizer.decode(ids)`. */
  decode?: ((ids: number[]) => string) | null;
  /** Seeds the generator (manualSeed) before sampling: same seed, same tokens. */
  seed?: number | null;
}

export interface GenerateOutput {
  /** `[B, L]` int64: generated tokens, padTokenId after a row ended. */
  completionIds: Tensor;
  /** `[B, L]` int64: 1 for generated tokens (EOS included), 0 after the row ended. */
  completionMask: Tensor;
  /** `[B, L]` float32: log-prob of each generated token under softmax(logits / temperature); 0 where masked. */
  logprobs: Tensor;
}

/** What generate needs from a model (CausalLM implements it). */
export interface GenerativeModel {
  readonly config: {
    vocabSize: number; eosTokenId: number | number[] | null; padTokenId: number | null;
    modelType: string; maxPositionEmbeddings: number;
  };
  readonly device: Device;
  /** Logits of the last position `[B, 1, V]`, updating `cache`. */
  _decode(inputIds: Tensor, opts: { attentionMask: Tensor | null; positionIds: Tensor; cache: KVCache }): Tensor;
}

function fail(msg: string): never {
  throw new RangeError(`generate: ${msg}`);
}

function tokenIds(v: unknown, what: string, vocab: number): number[] {
  const list = v === null || v === undefined ? [] : Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocab) fail(`'${what}' must hold token ids in [0, ${vocab}), got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

/**
 * Generates up to `maxNewTokens` tokens after each (left-padded) prompt.
 * @example
 * const { completionIds, completionMask, logprobs } = model.generate(ids, {
 *   attentionMask: mask, maxNewTokens: 64, doSample: true, temperature: 0.7, topP: 0.9, seed: 1 });
 */
export function generate(model: GenerativeModel, inputIds: Tensor, opts: GenerateOptions): GenerateOutput {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`generate: 'opts' must be an object with at least { maxNewTokens }`);
  const cfg = model.config;
  const maxNew = opts.maxNewTokens;
  if (!Number.isInteger(maxNew) || maxNew < 0) fail(`'maxNewTokens' must be a non-negative integer, got ${String(maxNew)}`);
  const doSample = opts.doSample ?? false;
  const temperature = opts.temperature ?? 1;
  if (!(typeof temperature === 'number' && temperature > 0 && Number.isFinite(temperature))) {
    fail(`'temperature' must be a positive number, got ${String(temperature)}; for greedy decoding use doSample: false`);
  }
  const topK = opts.topK ?? null;
  if (topK !== null && (!Number.isInteger(topK) || topK < 0)) fail(`'topK' must be a non-negative integer (0 = off), got ${String(topK)}`);
  const topP = opts.topP ?? null;
  if (topP !== null && !(typeof topP === 'number' && topP > 0 && topP <= 1)) fail(`'topP' must be in (0, 1], got ${String(topP)}`);
  const eos = new Set(tokenIds(opts.eosTokenId !== undefined ? opts.eosTokenId : cfg.eosTokenId, 'eosTokenId', cfg.vocabSize));
  const padOpt = opts.padTokenId ?? cfg.padTokenId ?? (eos.size ? [...eos][0] : 0);
  const pad = tokenIds(padOpt, 'padTokenId', cfg.vocabSize)[0];
  const stops = opts.stopStrings ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s === '')) fail(`'stopStrings' must be an array of non-empty strings, got ${JSON.stringify(stops)}`);
  const decode = opts.decode ?? null;
  if (stops.length && typeof decode !== 'function') {
    fail(`'stopStrings' needs a 'decode' function to turn tokens into text, e.g. { decode: (ids) => tokenizer.decode(ids) }`);
  }
  if (!(inputIds instanceof Tensor) || inputIds.ndim !== 2 || (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32')) {
    throw new TypeError(`generate: 'inputIds' must be an int64 tensor of shape [B, P]`);
  }
  const [B, P] = inputIds.shape;
  if (B < 1 || P < 1) fail(`'inputIds' must hold at least one prompt token per row, got shape [${B}, ${P}]`);
  const [lo, hi] = tidy(() => [inputIds.min().item(), inputIds.max().item()]);
  if (lo < 0 || hi >= cfg.vocabSize) fail(`'inputIds' holds token id ${lo < 0 ? lo : hi}, outside the vocabulary [0, ${cfg.vocabSize})`);
  const am = opts.attentionMask ?? null;
  if (am !== null && (!(am instanceof Tensor) || am.ndim !== 2 || am.shape[0] !== B || am.shape[1] !== P)) {
    fail(`'attentionMask' must have shape [${B}, ${P}] like inputIds`);
  }
  if (cfg.modelType === 'gpt2' && P + maxNew > cfg.maxPositionEmbeddings) {
    fail(`${P} prompt + ${maxNew} new tokens exceed GPT-2's ${cfg.maxPositionEmbeddings} positions (n_positions)`);
  }
  const device = model.device;

  const ids: number[][] = Array.from({ length: B }, () => []);
  const lps: number[][] = Array.from({ length: B }, () => []);
  const live: boolean[][] = Array.from({ length: B }, () => []);
  const done = new Array<boolean>(B).fill(false);

  inferenceMode(() => {
    if (opts.seed !== undefined && opts.seed !== null) manualSeed(opts.seed);
    if (maxNew === 0) return;
    const cache = new KVCache({ maxLength: P + maxNew });
    try {
      tidy(() => {
        // Padding: a [B, P + N] key mask (new tokens always 1), cumsum positions; otherwise none.
        let keyMask: Tensor | null = null;
        let pos: Tensor;
        let next: Tensor; //                                  [B|1, 1] position of the next new token
        const m = am === null ? null : am.ne(0);
        if (m && !m.select(1, P - 1).all().item()) {
          throw new RangeError('generate: the prompts are right-padded (some rows end with attention mask 0); generation continues after the last column, so pad prompts on the left (tokenizer padding side "left")');
        }
        if (m && !m.all().item()) {
          keyMask = ones([B, P + maxNew], { dtype: 'bool', device });
          keyMask.narrow(1, 0, P).copy_(m);
          const ml = m.long();
          pos = ml.cumsum(1).sub(1).maskedFill(m.logicalNot(), 1);
          next = ml.sum(1, { keepdim: true });
        } else {
          pos = arange(0, P, 1, { device }).unsqueeze(0);
          next = full([1, 1], P, { dtype: 'int64', device });
        }
        let logits = model._decode(inputIds, { attentionMask: keyMask ? keyMask.narrow(1, 0, P) : null, positionIds: pos, cache });
        const nextIds = new BigInt64Array(B);
        for (let step = 0; step < maxNew; step++) {
          const [tok, lp] = tidy(() => {
            let scores = logits.select(1, 0); //                    [B, V]
            if (scores.dtype !== 'float32') scores = scores.float();
            if (temperature !== 1) scores = scores.div(temperature);
            const chosen = doSample ? sampleTokens(scores, { topK, topP }) : scores.argmax(-1); // [B]
            const logp = scores.logSoftmax(-1).gather(1, chosen.unsqueeze(1)).squeeze(1); //          [B]
            return [chosen.toTypedArray() as BigInt64Array, logp.toTypedArray() as Float32Array];
          });
          logits.dispose();
          for (let b = 0; b < B; b++) {
            if (done[b]) {
              ids[b].push(pad); lps[b].push(0); live[b].push(false);
              nextIds[b] = BigInt(pad);
              continue;
            }
            const id = Number(tok[b]);
            ids[b].push(id); lps[b].push(lp[b]); live[b].push(true);
            nextIds[b] = tok[b];
            if (eos.has(id)) done[b] = true;
            else if (stops.length) {
              const text = decode!(ids[b].filter((_, i) => live[b][i]));
              if (stops.some((s) => text.includes(s))) done[b] = true;
            }
          }
          if (step === maxNew - 1 || done.every(Boolean)) break;
          const stepOut = tidy(() => {
            const input = tensor(nextIds, { shape: [B, 1], device });
            const kv = keyMask ? keyMask.narrow(1, 0, P + step + 1) : null;
            return { logits: model._decode(input, { attentionMask: kv, positionIds: next, cache }), next: next.add(1) };
          });
          next.dispose();
          ({ logits, next } = stepOut);
        }
      });
    } finally {
      cache.dispose();
    }
  });

  const L = ids[0].length;
  const idBuf = new BigInt64Array(B * L);
  const maskBuf = new BigInt64Array(B * L);
  const lpBuf = new Float32Array(B * L);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < L; i++) {
      idBuf[b * L + i] = BigInt(ids[b][i]);
      maskBuf[b * L + i] = live[b][i] ? 1n : 0n;
      lpBuf[b * L + i] = lps[b][i];
    }
  }
  return {
    completionIds: tensor(idBuf, { shape: [B, L], device }),
    completionMask: tensor(maskBuf, { shape: [B, L], device }),
    logprobs: tensor(lpBuf, { shape: [B, L], device }),
  };
}
