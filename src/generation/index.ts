// Generation: batched KV-cache decoding (greedy, temperature, top-k, top-p, EOS, stop strings, seeds)
// returning completion ids, mask and the sampled tokens' log-probs.
export { generate, type GenerateOptions, type GenerateOutput, type GenerativeModel } from './generate.js';
export { KVCache, type KVCacheOptions } from './cache.js';
export { topKFilter, topPFilter, sampleTokens } from './sampling.js';
