// Causal LMs and reward/value heads over the tensor layer, loaded from and saved to Hugging Face
// folders (DESIGN.md "Models, generation, data"): GPT-2 and the Llama family (Llama, Qwen2, Mistral).
export {
  PretrainedModel, CausalLM, GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM,
  type Backbone, type ForwardOptions, type CausalLMOutput,
} from './base.js';
export { RewardModel, ValueModel, type ScoreOptions, type ValueOutput } from './heads.js';
export {
  loadCausalLM, loadRewardModel, loadValueModel, createCausalLM, createRewardModel,
  type LoadOptions, type RewardLoadOptions, type CreateOptions as CreateModelOptions,
} from './load.js';
export {
  parseConfig, toHfConfig, ARCHITECTURES, type ModelConfig, type ModelType, type HeadKind, type RopeConfig, type Activation,
} from './config.js';
export { ropeInvFreq } from './rope.js';
export { LlamaModel } from './llama.js';
export { GPT2Model } from './gpt2.js';
