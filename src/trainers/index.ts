// Trainers (ALGORITHMS.md §9): the shared loop and configs, and each trainer with its typed config.
export { TrainerBase, type CommonConfig, type StepEvent, type TrainResult } from './base.js';
export { ConfigError, resolveConfig, describeSchema, type FieldSpec, type Schema } from './config.js';
export { MetricsLogger, readMetrics, formatMetrics, type Metrics } from './metrics.js';
export { latestCheckpoint, checkpointDir, type TrainerState } from './checkpoint.js';
export { frozenCopy } from './common.js';
export { OfflineTrainer, offlineSchema, type OfflineConfig } from './offline.js';
export { SFTTrainer, SFT_SCHEMA, describeSFTConfig, type SFTConfig, type SFTTrainerOptions, type SFTTrainBatch } from './sft.js';
export { RewardTrainer, REWARD_SCHEMA, describeRewardConfig, type RewardConfig, type RewardTrainerOptions, type RewardBatch } from './reward.js';
export { DPOTrainer, DPO_SCHEMA, describeDPOConfig, type DPOConfig, type DPOLossType, type DPOTrainerOptions, type DPOBatch } from './dpo.js';
export { GRPOTrainer, GSPOTrainer, GRPO_SCHEMA, GSPO_DEFAULTS, type GRPOConfig, type GRPOTrainerOptions, type GRPOBatch } from './grpo.js';
export { computeRewards, normalizeRewards, type RewardFunction, type NamedReward, type RewardContext, type RewardValue } from './rewards.js';
export { PPOTrainer, PPO_SCHEMA, describePPOConfig, AdaptiveKLController, type PPOConfig, type PPOTrainerOptions, type PPOBatch, type AdaptiveKlConfig } from './ppo.js';
