// The nn layer's public surface (reached as `nn.*` from the package root): Module and standard layers.
export {
  Module, type ModuleTo, type LoadStateDictOptions, type LoadStateDictResult, type RegisterBufferOptions,
} from './module.js';
export {
  Linear, Embedding, LayerNorm, RMSNorm, Dropout, Sequential, ModuleList, ReLU, GELU, SiLU, Tanh,
  type FactoryOptions, type LinearOptions, type EmbeddingOptions, type LayerNormOptions, type RMSNormOptions,
} from './layers.js';
