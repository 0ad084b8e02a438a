// Node entry point: a bundle folder, onnxruntime-node and node:crypto.
//
//   import { Recommender } from "edgerec";
//   const rec = await Recommender.load("bundle/");
//   const { items, gate } = await rec.recommend([50, 172, 133], { k: 10 });

import { createHash } from "node:crypto";
import { createReadStream, promises as fs, constants } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { fail, BundleError, MANIFEST } from "./bundle.js";
import { Recommender as Core } from "./recommender.js";

export { BundleError } from "./bundle.js";
export { UnknownItemError } from "./requests.js";

const sha256 = async (bytes) => createHash("sha256").update(bytes).digest("hex");

/** The bundle directory, resolved; anything else is a BundleError naming it. */
async function bundleRoot(dir) {
  if (typeof dir !== "string" && !(dir instanceof URL)) throw new TypeError(`path must be a string or URL, got ${typeof dir}`);
  let root;
  try {
    root = await fs.realpath(dir);
  } catch {
    root = path.resolve(String(dir));
  }
  const st = await fs.stat(root).catch(() => null);
  if (!st?.isDirectory()) throw new BundleError(`${root}: not a bundle directory`);
  const manifest = await fs.stat(path.join(root, MANIFEST)).catch(() => null);
  const config = await fs.stat(path.join(root, "config.json")).catch(() => null);
  if (!manifest && config?.isFile()) {
    throw new BundleError(
      `${root}: this is a training run, not a bundle; export it with \`edgerec export ${root} --out BUNDLE\` and load the bundle`,
    );
  }
  return root;
}

/** Open root/name after checking it is a regular file inside root. */
async function openChecked(root, name, limit) {
  const file = path.join(root, name);
  let lst;
  try {
    lst = await fs.lstat(file);
  } catch (e) {
    if (e.code === "ENOENT") throw fail(name, "missing from the bundle");
    throw fail(name, `cannot read (${e.message})`);
  }
  if (lst.isSymbolicLink()) {
    const target = await fs.realpath(file).catch(() => file);
    if (path.relative(root, target).startsWith("..")) throw fail(name, `symlink pointing outside the bundle (${target})`);
  }
  let handle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw fail(name, `cannot open (${e.message})`);
  }
  const st = await handle.stat();
  if (!st.isFile() || (limit !== undefined && st.size > limit)) {
    await handle.close();
    throw fail(name, !st.isFile() ? "not a regular file" : `too large (${st.size} bytes, limit ${limit})`);
  }
  return { handle, size: st.size };
}

/**
 * A Node source over a bundle folder: every file of the manifest is hashed (as the
 * Python runtime does), those the runtime uses are kept.
 */
async function folderSource(dir, { threads = 1 } = {}) {
  const root = await bundleRoot(dir);
  const source = {
    ort,
    root,
    verifiesUnused: true,
    bytesRead: 0,
    sha256,
    sessionOptions: {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      executionMode: "sequential",
      interOpNumThreads: 1,
      ...(threads ? { intraOpNumThreads: threads } : {}),
      logSeverityLevel: 3,
    },
    async read(name, limit) {
      const { handle } = await openChecked(root, name, limit);
      try {
        const bytes = new Uint8Array(await handle.readFile());
        source.bytesRead += bytes.length;
        return bytes;
      } finally {
        await handle.close();
      }
    },
    async hash(name, entry) {
      const { handle, size } = await openChecked(root, name);
      if (size !== entry.size) {
        await handle.close();
        throw fail(name, `size is ${size} bytes, manifest says ${entry.size}`);
      }
      const h = createHash("sha256");
      let n = 0;
      for await (const chunk of createReadStream(null, { fd: handle.fd, autoClose: false, highWaterMark: 1 << 20 })) {
        h.update(chunk);
        n += chunk.length;
      }
      await handle.close();
      if (n !== entry.size) throw fail(name, `size changed while reading (${n} bytes, manifest says ${entry.size})`);
      const digest = h.digest("hex");
      if (digest !== entry.sha256) {
        throw fail(name, `sha256 mismatch (file ${digest.slice(0, 12)}..., manifest ${entry.sha256.slice(0, 12)}...)`);
      }
    },
  };
  return source;
}

export class Recommender extends Core {
  /**
   * Verify and load a bundle folder.
   * @param {string} dir the bundle directory
   * @param {import("./recommender.js").LoadOptions} [options] verify (default true),
   *   precision, textEncoder (default true: load the cold-start text encoder),
   *   threads (onnxruntime intra-op threads, default 1; 0: onnxruntime's default),
   *   graphs ("onnx", or "ort" for the ORT-format graphs of `edgerec convert-ort`)
   * @returns {Promise<Recommender>}
   */
  static async load(dir, options = {}) {
    return Core.open.call(this, await folderSource(dir, options), options);
  }
}
