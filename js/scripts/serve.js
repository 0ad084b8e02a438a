// A small static server for the demo page, the browser tests and the browser benchmark
// (the same URL layout as `edgerec web`):
//
//   /                      web/index.html (the demo)      /web/...  web/
//   /src/...               the runtime's modules          /test/... test/ (browser tests)
//   /vendor/ort/...        onnxruntime-web's dist/        /vendor/tokenizers/...  tokenizers.js
//   /<name>/...            the bundle mounted as <name> ("bundle" for the demo)
//
//   node scripts/serve.js BUNDLE [--port 8000]

import { createServer } from "node:http";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
};
const STATIC = {
  src: path.join(JS, "src"),
  web: path.join(JS, "web"),
  test: path.join(JS, "test"),
  "vendor/ort": path.join(JS, "node_modules", "onnxruntime-web", "dist"),
  "vendor/tokenizers": path.join(JS, "node_modules", "@huggingface", "tokenizers", "dist"),
};

/**
 * Serve the demo and the bundles on 127.0.0.1. `served` counts the bytes sent per path.
 * @param {{bundles?: Record<string, string>, port?: number}} options
 */
export async function serve({ bundles = {}, port = 0 } = {}) {
  const mounts = { ...STATIC };
  for (const [name, dir] of Object.entries(bundles)) {
    if (!/^[\w.-]+$/.test(name) || mounts[name]) throw new Error(`cannot mount a bundle as ${name}`);
    mounts[name] = path.resolve(dir);
  }
  const served = {};
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    let rel = decodeURIComponent(url.pathname).replace(/^\/+/, "") || "web/index.html";
    const mount = Object.keys(mounts)
      .sort((a, b) => b.length - a.length)
      .find((m) => rel.startsWith(`${m}/`));
    const file = mount && path.join(mounts[mount], rel.slice(mount.length + 1));
    if (!file || !file.startsWith(mounts[mount] + path.sep)) {
      res.writeHead(404).end("not found");
      return;
    }
    try {
      const body = await fs.readFile(file);
      res.writeHead(200, {
        "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
        "cache-control": "no-store",
        // cross-origin isolation: performance.now() at 5 us, not 100 us (benchmarks)
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
      });
      res.end(body);
      served[url.pathname] = (served[url.pathname] ?? 0) + body.length;
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, served, close: () => new Promise((ok) => server.close(ok)) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--port");
  const port = at >= 0 ? Number(args[at + 1]) : 8000;
  const bundle = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--port");
  if (!bundle) {
    console.error("usage: node scripts/serve.js BUNDLE [--port 8000]");
    process.exit(2);
  }
  const { url } = await serve({ bundles: { bundle }, port });
  console.log(`edgerec demo: ${url}  (bundle ${path.resolve(bundle)})`);
}
