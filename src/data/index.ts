// Data: datasets in TRL's formats (JSONL streamed, JSON, arrays), validation with file:line errors,
// deterministic shuffles and splits, tokenisation with TRL's truncation rules, collators into padded
// int64 tensors, and a resumable batcher.
export {
  Dataset, loadDataset, datasetFromRows,
  type LoadDatasetOptions, type ShuffleOptions, type SplitOptions,
} from './dataset.js';
export {
  DatasetError, SkipReport, detectFormat, checkRow, extractPrompt, rowSource, DATASET_FORMATS,
  type DatasetFormat, type FormatInfo, type Row, type TextOrMessages, type TextRow, type PromptRow,
  type PromptCompletionRow, type PreferenceRow, type ConversationRow,
} from './format.js';
export {
  renderPrompt, renderCompletion, tokenizeSFT, tokenizePair, OverlongRow,
  type RenderOptions, type PromptTokenOptions, type PairTokenOptions, type SFTTokenOptions,
} from './tokenize.js';
export {
  collatePrompts, collatePromptCompletion, collatePreference, collateSFT,
  type CollateCommonOptions, type SkippedRow, type PromptCollateOptions, type PromptBatch,
  type PromptCompletionCollateOptions, type PromptCompletionBatch, type PreferenceCollateOptions,
  type PreferenceBatch, type SFTCollateOptions, type SFTBatch,
} from './collate.js';
export { DataLoader, batches, type LoaderOptions, type LoaderState } from './loader.js';
export { mulberry32, mixSeed, permutation, seededRandom } from './rng.js';
