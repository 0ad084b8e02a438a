// The browser runtime (onnxruntime-web, wasm, 1 thread) in headless Chromium against the
// Python runtime, on the bundles of js/test/expected.py served over HTTP.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { serve } from "../scripts/serve.js";
import { chromiumPath, launch, open } from "./browser.js";
import { assertParity, badBundles, fixtures } from "./fixtures.js";
import { compare } from "./parity.js";

const skip = chromiumPath() ? false : "no Chromium: apt-get install -y chromium (or set CHROMIUM_PATH)";
const FIXTURES = fixtures();
const DEMO = FIXTURES["real-tiny"] ? "real-tiny" : "float32-int";
const BAD = ["sha256", "size", "missing", "version1", "npy-shape", "ids-dup", "graph-swap"];
let server;
let browser;
let page;

before(async () => {
  if (skip) return;
  const bundles = Object.fromEntries(Object.entries(FIXTURES).map(([name, f]) => [name, f.bundle]));
  for (const name of BAD) bundles[`bad-${name}`] = badBundles()[name].path;
  bundles.bundle = FIXTURES[DEMO].bundle; // the demo page's default bundle
  server = await serve({ bundles });
  browser = await launch();
  page = await open(browser, `${server.url}web/harness.html`);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

for (const [name, { cases, expected }] of Object.entries(FIXTURES)) {
  test(`browser parity with edgerec.runtime: ${name}`, { skip }, async () => {
    const got = await page.evaluate(
      async (name, cases) => {
        const { Recommender } = await import("/src/browser.js");
        const { runCases } = await import("/test/parity.js");
        const rec = await Recommender.load(`/${name}/`, { graphs: name.endsWith("-ort") ? "ort" : "onnx" });
        return { precision: rec.precision, out: await runCases(rec, cases) };
      },
      name,
      cases,
    );
    assert.equal(got.precision, expected.precision);
    const figures = compare(expected, got.out);
    if (name === "real-tiny") {
      // the int8 text encoder: per-tensor dynamic quantization over a padded batch comes
      // out differently in wasm than on x86 (docs/js.md); the user side is held to the bar
      assert.ok(figures.minCosine >= 0.99, JSON.stringify(figures));
      assert.equal(figures.tokensIdentical, figures.texts);
      delete figures.minCosine;
      delete figures.cold;
    }
    assertParity(assert, figures, `chromium ${name}`);
    assert.deepEqual(page.errors.filter((e) => !e.includes("404")), []);
  });
}

test("browser: bad bundles are refused with the Python runtime's messages", { skip }, async () => {
  for (const name of BAD) {
    const message = await page.evaluate(async (name) => {
      const { Recommender } = await import("/src/browser.js");
      try {
        await Recommender.load(`/bad-${name}/`);
        return null;
      } catch (e) {
        return `${e.name}: ${e.message}`;
      }
    }, name);
    assert.equal(message, `BundleError: ${badBundles()[name].message}`, name);
  }
});

test("browser: textEncoder false downloads no cold-start file", { skip }, async () => {
  const files = await page.evaluate(async () => {
    const { Recommender } = await import("/src/browser.js");
    const rec = await Recommender.load("/float32-int/", { textEncoder: false });
    return rec.files;
  });
  assert.deepEqual(Object.keys(files).sort(), ["items.json", "items.npy", "manifest.json", "popularity.npy", "recommend.onnx"]);
});

test("demo page: search, click liked items, recommendations as Python's", { skip }, async () => {
  const { cases, expected } = FIXTURES[DEMO];
  const demo = await open(browser, server.url);
  await demo.waitForSelector("body[data-ready]", { timeout: 60_000 });
  const shown = async () =>
    demo.evaluate(() => ({
      ids: [...document.querySelectorAll("#recs button")].map((b) => b.dataset.id),
      gate: document.getElementById("gate").dataset.gate,
      history: [...document.querySelectorAll("#history li")].map((li) => li.dataset.id),
    }));
  const check = async (n) => {
    const got = await shown();
    const want = expected.demo[n];
    assert.deepEqual(got.ids, want.items.map((x) => String(x.item_id)), `after ${n} clicks`);
    if (want.gate === null) assert.equal(got.gate, "");
    else assert.ok(Math.abs(Number(got.gate) - want.gate) < 1e-4, `gate ${got.gate} vs ${want.gate}`);
    assert.deepEqual(got.history, cases.demo.slice(0, n).map(String));
  };
  await check(0); // empty history: the popularity fallback
  for (let n = 1; n <= cases.demo.length; n++) {
    const id = cases.demo[n - 1];
    const title = await demo.evaluate((id) => window.edgerecDemo.items.find((x) => String(x.itemId) === id).title, String(id));
    await demo.click("#search", { clickCount: 3 });
    await demo.type("#search", title);
    const updates = await demo.evaluate(() => document.body.dataset.updates);
    await demo.click(`#results button[data-id="${id}"]`);
    await demo.waitForFunction((u) => document.body.dataset.updates !== u, {}, updates);
    await check(n);
  }
  assert.deepEqual(demo.errors, []);
  await demo.close();
});
