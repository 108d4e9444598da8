// ops: the fused RL ops (ALGORITHMS.md), the only place trainers get loss math from.
export { klPenalty, type KlEstimator, type KlPenaltyOptions } from './klPenalty.js';
export { linearTokenLogprobs, type LinearTokenLogprobsOptions, type LinearTokenLogprobsResult } from './linearTokenLogprobs.js';
