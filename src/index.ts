// llmrl: post-train language models with reinforcement learning from Node.js, on libtorch.
export * from './tensor/index.js';
export * as ops from './ops/index.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export * from './io/safetensors.js';
export * from './tokenizer/index.js';
export * from './models/index.js';
export * from './generation/index.js';
export * from './data/index.js';
export * from './trainers/index.js';
