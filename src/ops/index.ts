// ops: the fused RL ops (ALGORITHMS.md), the only place trainers get loss math from.
export { klPenalty, type KlEstimator, type KlPenaltyOptions } from './klPenalty.js';
export { gae, type GaeOptions, type GaeResult } from './gae.js';
export { maskedWhiten, type MaskedWhitenOptions } from './maskedWhiten.js';
export { groupAdvantages, type AdvantageScale, type GroupAdvantagesOptions, type GroupAdvantagesResult } from './groupAdvantages.js';
export { linearTokenLogprobs, type LinearTokenLogprobsOptions, type LinearTokenLogprobsResult } from './linearTokenLogprobs.js';
export { tokenLogprobs, type TokenLogprobsOptions, type TokenLogprobsResult } from './tokenLogprobs.js';
export { clippedSurrogate, type ClippedSurrogateOptions, type ClippedSurrogateResult, type SurrogateLevel, type SurrogateMetrics } from './clippedSurrogate.js';
export { lossAgg, type LossAggregation, type LossAggOptions } from './lossAgg.js';
export { valueLoss, type ValueLossOptions, type ValueLossResult } from './valueLoss.js';
export { preferenceLoss, type PreferenceLossType, type PreferenceLossOptions, type PreferenceLossResult } from './preferenceLoss.js';
export { bradleyTerryLoss, type BradleyTerryLossOptions, type BradleyTerryLossResult } from './bradleyTerryLoss.js';
