// recommend() latency of the JS runtime over a list of requests, in Node or in headless
// Chromium (wasm, 1 thread), as JSON: load time, bytes read, p50/p95/mean per call.
//
//   node scripts/bench.mjs BUNDLE REQUESTS.json [--browser] [--rounds 5] [--graphs ort]
//
// REQUESTS.json: [{history, timestamps?, behaviours?, now?, k?}, ...]. Each round calls
// recommend() once per request, in order; the first round is a warm-up.

import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const args = process.argv.slice(2);
const value = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const [bundle, requestsFile] = args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
const requests = JSON.parse(readFileSync(requestsFile, "utf8"));
const rounds = Number(value("--rounds", 5));
const graphs = value("--graphs", "onnx");
const browserMode = args.includes("--browser");

/** The measurement itself: runs where the runtime is (Node, or inside the page). */
async function measure(Recommender, src, requests, rounds, graphs) {
  const t0 = performance.now();
  const rec = await Recommender.load(src, { textEncoder: false, graphs });
  const loadMs = performance.now() - t0;
  const opts = (r) => ({ k: r.k ?? 10, timestamps: r.timestamps ?? null, behaviours: r.behaviours ?? null, now: r.now ?? null });
  const times = [];
  for (let round = 0; round < rounds; round++) {
    for (const r of requests) {
      const s = performance.now();
      await rec.recommend(r.history, opts(r));
      if (round > 0) times.push(performance.now() - s);
    }
  }
  // a control on the same thread: fixed arithmetic of about one call's length, no
  // onnxruntime; its tail is the machine's (a busy shared machine stalls both alike)
  const control = [];
  let x = 0;
  const n = Math.max(1, Math.round((times.reduce((a, b) => a + b, 0) / times.length) * 8e4));
  for (let i = 0; i < times.length; i++) {
    const s = performance.now();
    for (let j = 0; j < n; j++) x += Math.sqrt(j);
    await Promise.resolve();
    control.push(performance.now() - s);
  }
  control.sort((a, b) => a - b);
  times.sort((a, b) => a - b);
  const at = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
  const q = (p) => at(times, p);
  return {
    controlP50Ms: at(control, 0.5),
    controlP95Ms: at(control, 0.95),
    controlChecksum: x > 0,
    loadMs,
    bytesRead: rec.bytesRead,
    files: rec.files ?? null,
    graphFiles: rec.graphFiles,
    calls: times.length,
    p50Ms: q(0.5),
    p95Ms: q(0.95),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
  };
}

let out;
if (browserMode) {
  const { serve } = await import("./serve.js");
  const { launch, open } = await import("../test/browser.js");
  const server = await serve({ bundles: { bundle } });
  const browser = await launch();
  try {
    const page = await open(browser, `${server.url}web/harness.html`);
    const t0 = Date.now();
    out = await page.evaluate(
      async (source, requests, rounds, graphs) => {
        const { Recommender } = await import("/src/browser.js");
        const measure = new Function(`return (${source})`)();
        return { ...(await measure(Recommender, "/bundle/", requests, rounds, graphs)), isolated: crossOriginIsolated };
      },
      measure.toString(),
      requests,
      rounds,
      graphs,
    );
    out.pageMs = Date.now() - t0;
    // what the page downloaded: the bundle's files and the runtime's code (raw and gzip)
    const runtime = Object.entries(server.served).filter(([p]) => !p.startsWith("/bundle/"));
    const size = (p) => readFileSync(new URL(`..${p.replace("/vendor/ort/", "/node_modules/onnxruntime-web/dist/").replace("/vendor/tokenizers/", "/node_modules/@huggingface/tokenizers/dist/")}`, import.meta.url));
    out.runtimeFiles = Object.fromEntries(runtime.map(([p, n]) => [p, { bytes: n, gzip: gzipSync(size(p)).length }]));
    out.browser = await browser.version();
  } finally {
    await browser.close();
    await server.close();
  }
} else {
  const { Recommender } = await import("../src/node.js");
  out = await measure(Recommender, bundle, requests, rounds, graphs);
  out.node = process.version;
}
console.log(JSON.stringify({ target: browserMode ? "chromium-wasm-1thread" : "node", graphs, ...out }));
