// `npm test`: the native op tests (ctest, in the cmake-js build folder) and the TypeScript tests
// (vitest), then one plain summary line `N passed, N failed` over both (what CI reads).
// Flags: --native-only, --ts-only; extra arguments go to vitest (e.g. a file filter).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const nativeOnly = args.includes('--native-only');
const tsOnly = args.includes('--ts-only');
const extra = args.filter((a) => !a.startsWith('--native-only') && !a.startsWith('--ts-only'));
let passed = 0;
let failed = 0;

function runNative() {
  const buildDir = path.join(root, 'build');
  if (!fs.existsSync(path.join(buildDir, 'CTestTestfile.cmake'))) {
    console.error('native tests: no build folder; run `npm install` (or `node scripts/build-native.mjs`) first');
    failed += 1;
    return;
  }
  // ctest does not rebuild: build the test binary first (incremental, fast when up to date).
  const build = spawnSync('cmake', ['--build', buildDir, '--target', 'llmrl_native_tests', '--parallel', '2'], { stdio: 'inherit' });
  if (build.status !== 0) { failed += 1; return; }
  const r = spawnSync('ctest', ['--test-dir', buildDir, '--output-on-failure'], { encoding: 'utf8' });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  const m = /(\d+)% tests passed, (\d+) tests? failed out of (\d+)/.exec(r.stdout ?? '');
  if (!m) { console.error('native tests: could not read ctest\'s summary'); failed += 1; return; }
  const total = Number(m[3]);
  const bad = Number(m[2]);
  passed += total - bad;
  failed += bad;
}

function runTs() {
  const report = path.join(os.tmpdir(), `llmrl-vitest-${process.pid}.json`);
  const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const r = spawnSync(process.execPath, [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...extra],
    { stdio: 'inherit', cwd: root });
  if (!fs.existsSync(report)) {
    console.error(`vitest: no report written (exit ${r.status})`);
    failed += 1;
    return;
  }
  const j = JSON.parse(fs.readFileSync(report, 'utf8'));
  fs.rmSync(report, { force: true });
  passed += j.numPassedTests;
  failed += j.numFailedTests;
  // A suite that failed to load counts as a failure even though it ran no test.
  const brokenSuites = (j.testResults ?? []).filter((s) => s.status === 'failed' && (s.assertionResults ?? []).length === 0).length;
  failed += brokenSuites;
  if (r.status !== 0 && j.numFailedTests === 0 && brokenSuites === 0) failed += 1;
}

if (!tsOnly) runNative();
if (!nativeOnly) runTs();
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
