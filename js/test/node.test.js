// The Node runtime (onnxruntime-node) against the Python runtime on bundles made at
// test time: the same answers, the same refusals of bad bundles.

import assert from "node:assert/strict";
import { test } from "node:test";
import { BundleError, Recommender, UnknownItemError } from "../src/node.js";
import { assertParity, badBundles, fixtures } from "./fixtures.js";
import { compare, runCases } from "./parity.js";

const FIXTURES = fixtures();

for (const [name, { bundle, cases, expected }] of Object.entries(FIXTURES)) {
  test(`parity with edgerec.runtime: ${name}`, async () => {
    const rec = await Recommender.load(bundle, { graphs: name.endsWith("-ort") ? "ort" : "onnx" });
    assert.equal(rec.precision, expected.precision);
    if (name.endsWith("-ort")) assert.equal(rec.graphFiles.recommend, "recommend.ort");
    const figures = compare(expected, await runCases(rec, cases));
    assertParity(assert, figures, name);
  });
}

test("bad bundles are refused with the Python runtime's messages", async (t) => {
  for (const [name, { path, message }] of Object.entries(badBundles())) {
    await t.test(name, async () => {
      if (message === null) {
        await Recommender.load(path); // Python loads it: so must we
        return;
      }
      await assert.rejects(Recommender.load(path), (e) => {
        assert.ok(e instanceof BundleError, `${name}: ${e}`);
        assert.equal(e.message, message);
        return true;
      });
    });
  }
});

test("no verification: a corrupted file is not hashed", async () => {
  const bad = badBundles().sha256.path;
  const rec = await Recommender.load(bad, { verify: false });
  assert.ok(rec.nItems > 0);
});

test("request checks, fallback, strict, catalog updates", async () => {
  const { bundle } = FIXTURES["float32-int"];
  const rec = await Recommender.load(bundle);
  const ids = rec.itemIds;
  const fb = await rec.recommend(["nope", 123456789], { k: 3 });
  assert.equal(fb.fallback, "popularity");
  assert.equal(fb.gate, null);
  assert.deepEqual(fb.unknownItems, ["nope", 123456789]);
  assert.equal(fb.items.length, 3);
  await assert.rejects(rec.recommend([ids[0], "nope"], { strict: true }), UnknownItemError);
  await assert.rejects(rec.recommend([ids[0]], { k: 0 }), /k must be a positive int/);
  await assert.rejects(rec.recommend([ids[0]], { k: 2.5 }), /k must be a positive int/);
  await assert.rejects(rec.recommend([1.5]), /item ids must be int or str, got float/);
  await assert.rejects(rec.recommend("abc"), /must be an ordered sequence/);
  await assert.rejects(rec.recommend([ids[0]], { timestamps: [1, 2] }), /timestamps has 2 entries/);
  const byString = await rec.recommend([String(ids[0]), ids[1]]);
  const byInt = await rec.recommend([ids[0], ids[1]]);
  assert.deepEqual(byString.items, byInt.items);
  const batch = await rec.recommendBatch([[ids[0]], [ids[1], ids[2]], ["nope"]], { k: 4 });
  const single = (await rec.recommend([ids[0]], { k: 4 })).items;
  assert.deepEqual(batch[0].items.map((x) => x.itemId), single.map((x) => x.itemId));
  batch[0].items.forEach((x, i) => assert.ok(Math.abs(x.score - single[i].score) < 1e-5));
  assert.equal(batch[2].fallback, "popularity");
  // exclude and candidates
  const top = (await rec.recommend([ids[0]], { k: 5 })).items.map((x) => x.itemId);
  const ex = (await rec.recommend([ids[0]], { k: 5, exclude: top.slice(0, 2) })).items.map((x) => x.itemId);
  assert.ok(!ex.includes(top[0]) && !ex.includes(top[1]));
  const cand = await rec.recommend([ids[0]], { k: 10, candidates: ids.slice(5, 8) });
  assert.deepEqual(new Set(cand.items.map((x) => x.itemId)), new Set(ids.slice(5, 8)));
  // cold start and removal
  await assert.rejects(rec.addItems([ids[0]], ["action"]), /already in the catalog/);
  await assert.rejects(rec.addItems([5000, 5000], ["a", "b"]), /duplicates/);
  await assert.rejects(rec.addItems([5000], ["a", "b"]), /texts has 2 entries/);
  assert.equal(await rec.addItems([5000, 5001], ["action space", "love story"], ["A", "B"]), 2);
  assert.equal(rec.nItems, ids.length + 2);
  assert.ok(rec.itemVector(5000).length === rec.dim);
  assert.throws(() => rec.removeItems([424242]), UnknownItemError);
  assert.equal(rec.removeItems([5000, ids[0]]), 2);
  assert.equal(rec.removeItems([5000]), 0);
  const after = await rec.recommend([ids[1]], { k: rec.nItems });
  assert.ok(!after.items.some((x) => x.itemId === 5000 || x.itemId === ids[0]));
  assert.equal(await rec.addItems([5000], ["crime night"]), 1); // a removed id comes back
  await rec.release();
});

test("textEncoder: false skips the cold-start files", async () => {
  const { bundle } = FIXTURES["float32-int"];
  const rec = await Recommender.load(bundle, { textEncoder: false });
  assert.equal(rec.hasTextEncoder, false);
  await assert.rejects(rec.addItems([9999], ["x"]), BundleError);
});
