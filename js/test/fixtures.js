// The test bundles and the Python runtime's answers (js/test/expected.py): read from
// $EDGEREC_JS_FIXTURES when set (the pytest wrapper makes them), else made once per
// test run with the repository's Python.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");

function python() {
  if (process.env.EDGEREC_PYTHON) return process.env.EDGEREC_PYTHON;
  const venv = path.join(REPO, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export function fixtureDir() {
  let dir = process.env.EDGEREC_JS_FIXTURES;
  if (!dir) {
    // one directory per `node --test` run (its files run as children of one process)
    dir = path.join(os.tmpdir(), `edgerec-js-fixtures-${process.ppid}`);
    if (!existsSync(path.join(dir, "index.json"))) {
      execFileSync(python(), [path.join(HERE, "expected.py"), "fixtures", dir], { stdio: "inherit" });
    }
  }
  return dir;
}

/** {name: {bundle, cases, expected}} of every fixture bundle. */
export function fixtures() {
  const dir = fixtureDir();
  const index = JSON.parse(readFileSync(path.join(dir, "index.json"), "utf8"));
  const read = (f) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));
  return Object.fromEntries(
    Object.entries(index).map(([name, bundle]) => [
      name,
      { bundle, cases: read(`${name}.cases.json`), expected: read(`${name}.expected.json`) },
    ]),
  );
}

/** {case: {path, message}}: bad bundles and the Python runtime's BundleError messages. */
export function badBundles() {
  return JSON.parse(readFileSync(path.join(fixtureDir(), "bad.json"), "utf8"));
}

/** The parity bar of issue 22. */
export function assertParity(assert, figures, where) {
  const detail = `${where}: ${JSON.stringify(figures)}`;
  assert.ok(figures.identicalShare >= 0.995, `identical top-k lists ${figures.identicalShare} < 0.995 ${detail}`);
  assert.ok(figures.maxScoreDiff <= 1e-4, `scores differ by ${figures.maxScoreDiff} ${detail}`);
  assert.equal(figures.otherMismatches, 0, detail);
  if (figures.cold) {
    const c = figures.cold;
    assert.ok(c.identicalShare >= 0.995 && c.maxScoreDiff <= 1e-4 && !c.otherMismatches, `after cold start ${JSON.stringify(c)} ${detail}`);
  }
  if (figures.minCosine !== undefined) {
    assert.ok(figures.minCosine >= 0.9999, `cold-start vectors: cosine ${figures.minCosine} ${detail}`);
    assert.equal(figures.tokensIdentical, figures.texts, `token ids differ ${detail}`);
  }
}
