import { expect, test } from 'vitest';
import { ConfigError, atLeast, oneOf, positive, resolveConfig, type Schema } from '../../src/trainers/config.js';

interface Demo { lr: number; numGenerations: number; loss: 'a' | 'b'; name: string | null }
const schema: Schema<Demo> = {
  lr: { default: 1e-5, check: positive, doc: 'learning rate', trl: 'learning_rate' },
  numGenerations: { default: 8, check: atLeast(2), doc: 'G' },
  loss: { default: 'a', check: oneOf('a', 'b'), doc: 'loss type' },
  name: { default: null, doc: 'run name' },
};

test('defaults fill in, user values override', () => {
  expect(resolveConfig('X', schema, { lr: 3e-4 })).toEqual({ lr: 3e-4, numGenerations: 8, loss: 'a', name: null });
});

test('unknown keys are rejected with a suggestion and the valid list', () => {
  expect(() => resolveConfig('GRPOConfig', schema, { num_generations: 4 })).toThrow(
    /GRPOConfig: unknown option 'num_generations' — did you mean 'numGenerations'\? Valid options: lr, numGenerations, loss, name/);
});

test('range and type errors say how to fix', () => {
  expect(() => resolveConfig('GRPOConfig', schema, { numGenerations: 1 })).toThrow(/option 'numGenerations' must be ≥ 2, got 1/);
  expect(() => resolveConfig('GRPOConfig', schema, { loss: 'c' as 'a' })).toThrow(/must be one of 'a', 'b'/);
  expect(() => resolveConfig('GRPOConfig', schema, { lr: '1e-5' as unknown as number })).toThrow(ConfigError);
});
