// Runs the cases of js/test/expected.py through the JS runtime -- in Node, or in headless
// Chromium -- and prints the comparison with the Python runtime's answers as JSON.
//
//   node scripts/parity.mjs BUNDLE CASES.json EXPECTED.json [--browser] [--graphs ort]
//                           [--precision fp32]

import { readFileSync } from "node:fs";
import { compare, runCases } from "../test/parity.js";

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const [bundle, casesFile, expectedFile] = args.filter((a, i) => !a.startsWith("--") && !["--graphs", "--precision"].includes(args[i - 1]));
const precision = value("--precision", null);
const cases = JSON.parse(readFileSync(casesFile, "utf8"));
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const graphs = value("--graphs", "onnx");
let got;
let info;
if (flag("--browser")) {
  const { serve } = await import("./serve.js");
  const { launch, open } = await import("../test/browser.js");
  const server = await serve({ bundles: { bundle } });
  const browser = await launch();
  try {
    const page = await open(browser, `${server.url}web/harness.html`);
    ({ got, info } = await page.evaluate(
      async (cases, graphs, precision) => {
        const { Recommender } = await import("/src/browser.js");
        const { runCases } = await import("/test/parity.js");
        const rec = await Recommender.load("/bundle/", { graphs, precision });
        const info = { graphFiles: rec.graphFiles, precision: rec.precision };
        return { got: await runCases(rec, cases), info };
      },
      cases,
      graphs,
      precision,
    ));
  } finally {
    await browser.close();
    await server.close();
  }
} else {
  const { Recommender } = await import("../src/node.js");
  const rec = await Recommender.load(bundle, { graphs, precision });
  info = { graphFiles: rec.graphFiles, precision: rec.precision };
  got = await runCases(rec, cases);
}
console.log(JSON.stringify({ target: flag("--browser") ? "chromium-wasm" : "node", graphs, ...info, ...compare(expected, got) }));
