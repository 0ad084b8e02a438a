// Browser entry point: a bundle URL, onnxruntime-web (wasm) and WebCrypto.
//
//   import { Recommender } from "edgerec";  // or "./src/browser.js" with an import map
//   const rec = await Recommender.load("https://example.com/bundle/", { textEncoder: false });
//   const { items, gate } = await rec.recommend([50, 172, 133], { k: 10 });
//
// Only the files the runtime uses are downloaded, each checked against the manifest's
// size and sha256; with textEncoder: false the cold-start text encoder and tokenizer are
// not downloaded at all (addItems is then unavailable).

import * as ort from "onnxruntime-web/wasm";
import { fail } from "./bundle.js";
import { Recommender as Core } from "./recommender.js";

export { BundleError } from "./bundle.js";
export { UnknownItemError } from "./requests.js";
export { ort };

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function urlSource(url, { threads = 1, wasmPaths } = {}) {
  const base = new URL(String(url).endsWith("/") ? String(url) : `${url}/`, globalThis.location?.href);
  ort.env.wasm.numThreads = threads;
  if (wasmPaths) ort.env.wasm.wasmPaths = wasmPaths;
  const source = {
    ort,
    root: base.href,
    verifiesUnused: false,
    bytesRead: 0,
    files: {},
    sha256,
    sessionOptions: { executionProviders: ["wasm"], graphOptimizationLevel: "all", executionMode: "sequential" },
    async read(name, limit) {
      let response;
      try {
        response = await fetch(new URL(name, base), { cache: "no-cache" });
      } catch (e) {
        throw fail(name, `cannot read (${e.message})`);
      }
      if (response.status === 404) throw fail(name, "missing from the bundle");
      if (!response.ok) throw fail(name, `cannot read (HTTP ${response.status})`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (limit !== undefined && bytes.length > limit) throw fail(name, `too large (${bytes.length} bytes, limit ${limit})`);
      source.bytesRead += bytes.length;
      source.files[name] = bytes.length;
      return bytes;
    },
  };
  return source;
}

export class Recommender extends Core {
  /**
   * Verify and load a bundle served at `url` (a folder URL).
   * @param {string|URL} url
   * @param {import("./recommender.js").LoadOptions & {wasmPaths?: string}} [options]
   *   verify, precision, textEncoder (false: skip the cold-start text encoder),
   *   threads (wasm threads, default 1), wasmPaths (where onnxruntime-web's .wasm is)
   * @returns {Promise<Recommender>}
   */
  static async load(url, options = {}) {
    const source = urlSource(url, options);
    const rec = await Core.open.call(this, source, options);
    rec.files = source.files;
    return rec;
  }
}
