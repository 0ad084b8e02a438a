// A screenshot of the demo page after a few clicks (docs/web-demo.png).
//
//   node scripts/screenshot.mjs BUNDLE OUT.png [query ...]

import { serve } from "./serve.js";
import { launch, open } from "../test/browser.js";

const [bundle, out, ...queries] = process.argv.slice(2);
const server = await serve({ bundles: { bundle } });
const browser = await launch();
try {
  const page = await open(browser, server.url);
  await page.setViewport({ width: 1180, height: 540 });
  await page.waitForSelector("body[data-ready]", { timeout: 60_000 });
  const picks = queries.length ? queries : ["star wars", "empire strikes", "raiders", "terminator"];
  for (const q of picks) {
    await page.click("#search", { clickCount: 3 });
    await page.type("#search", q);
    const updates = await page.evaluate(() => document.body.dataset.updates);
    await page.click("#results button");
    await page.waitForFunction((u) => document.body.dataset.updates !== u, {}, updates);
  }
  await page.click("#search", { clickCount: 3 });
  await page.type("#search", "alien");
  await page.screenshot({ path: out });
  console.log(out, page.errors);
} finally {
  await browser.close();
  await server.close();
}
