// Tokenizers: Hugging Face folders (tokenizer.json + config + chat templates) and a char-level one.
export { Tokenizer, loadTokenizer, type ChatMessage, type EncodeOptions, type BatchEncodeOptions, type ChatTemplateOptions } from './tokenizer.js';
export { createCharTokenizer, type CharTokenizerOptions } from './charTokenizer.js';
