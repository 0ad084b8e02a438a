// Headless Chromium for the browser tests and benchmarks: Debian's `chromium` driven by
// puppeteer-core (puppeteer's own browser download does not work offline).

import { existsSync } from "node:fs";
import puppeteer from "puppeteer-core";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/usr/bin/google-chrome-stable"];

/** The browser's executable, or null (CHROMIUM_PATH overrides). */
export function chromiumPath() {
  const env = process.env.CHROMIUM_PATH;
  if (env) return env;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

export async function launch() {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error("no Chromium found: apt-get install -y chromium (or set CHROMIUM_PATH)");
  return puppeteer.launch({
    executablePath,
    headless: true,
    // root in a container: no user namespaces for the sandbox; /dev/shm may be small
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

/** A page on `url` with console errors collected; fails on uncaught page errors. */
export async function open(browser, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url, { waitUntil: "load" });
  page.errors = errors;
  return page;
}
