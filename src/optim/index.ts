// The optim layer's public surface (reached as `optim.*` from the package root): optimisers,
// learning-rate schedules and gradient clipping.
export {
  Optimizer, AdamW, SGD, type ParamGroup, type Params, type ParamState, type OptimizerStateDict,
  type AdamWOptions, type SGDOptions,
} from './optimizer.js';
export {
  LambdaLR, getConstantSchedule, getConstantScheduleWithWarmup, getLinearScheduleWithWarmup,
  getCosineScheduleWithWarmup, createScheduler, type LrLambda, type SchedulerStateDict, type SchedulerType,
  type SchedulerConfig,
} from './schedulers.js';
export { clipGradNorm } from './clip.js';
