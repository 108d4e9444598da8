#!/usr/bin/env node
// llmrl command line: doctor, bench, demo, train <algo> (see ./main.ts).
import { main } from './main.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
