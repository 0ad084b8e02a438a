// `Recommender`: a verified bundle, its onnxruntime sessions and the current catalog --
// the JavaScript twin of edgerec.runtime.Recommender on its CPU path. One request path:
// recommend and recommendBatch normalise their arguments into the arrays of
// docs/bundle.md, run the bundle's `recommend` graph, and map rows back to ids.
//
// Platform-free: node.js and browser.js pass in onnxruntime (-node or -web) and a
// `source` that reads and hashes the bundle's files.

import {
  BundleError,
  checkFile,
  checkInterface,
  checkOnnx,
  choosePrecision,
  fail,
  graphFile,
  MANIFEST,
  MAX_MANIFEST_BYTES,
  parseItemIds,
  parseJson,
  parseManifest,
  parseNpy,
  shapeRepr,
  toFloat32,
} from "./bundle.js";
import * as Q from "./requests.js";
import { TextTokenizer } from "./tokenize.js";

export { BundleError } from "./bundle.js";
export { UnknownItemError } from "./requests.js";

const MAX_CELLS = 1 << 20; // events per graph run (histories x widest)
const TEXT_BATCH = 64; // texts per text-encoder run
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * @typedef {{itemId: number|string, score: number, title: string|null}} Recommendation
 * @typedef {{items: Recommendation[], gate: number|null, unknownItems: Array,
 *   unknownBehaviours: Array, fallback: "popularity"|null, nEvents: number, nUsed: number}} RecommendationList
 * @typedef {{k?: number, excludeSeen?: boolean, behaviours?: Array, timestamps?: Array,
 *   now?: number|bigint|null, candidates?: Array, exclude?: Array, strict?: boolean}} RecommendOptions
 * @typedef {{verify?: boolean, precision?: string, textEncoder?: boolean, threads?: number,
 *   graphs?: "onnx"|"ort"}} LoadOptions
 * @typedef {{ort: object, root: string, sessionOptions: object, verifiesUnused: boolean,
 *   read: (name: string, limit?: number) => Promise<Uint8Array>,
 *   hash: (name: string, entry: object) => Promise<void>,
 *   sha256: (b: Uint8Array) => Promise<string>, bytesRead: number}} Source
 */

export class Recommender {
  /**
   * Verify a bundle and build its sessions (use the platform's `load`, in node.js or
   * browser.js, which supplies `source`).
   * @param {Source} source
   * @param {LoadOptions} options
   */
  static async open(source, { verify = true, precision = null, textEncoder = true, graphs = "onnx" } = {}) {
    const started = performance.now();
    if (graphs !== "onnx" && graphs !== "ort") throw new Error(`graphs must be 'onnx' or 'ort', got ${graphs}`);
    const m = parseManifest(parseJson(await source.read(MANIFEST, MAX_MANIFEST_BYTES), MANIFEST));
    precision = choosePrecision(m, precision);
    const pick = (role) => {
      const onnx = graphFile(m, role, precision);
      if (graphs === "onnx" || !onnx) return onnx;
      const ort = m.raw.ort_graphs?.[onnx];
      if (!ort) throw fail(MANIFEST, `no ORT-format graph for ${onnx} (run edgerec convert-ort BUNDLE)`);
      return ort;
    };
    const recommendFile = pick("recommend");
    const textFile = textEncoder && m.graphs.text_encoder ? pick("text_encoder") : null;
    const spec = m.itemMatrix;
    const used = [recommendFile, spec.file, spec.scaleFile, m.itemIds, m.popularity];
    if (textFile) used.push(textFile, m.tokenizer);
    const wanted = new Set(used.filter(Boolean));
    for (const name of wanted) {
      if (!m.files[name]) throw fail(MANIFEST, `${name} is used but not listed in files (no checksum)`);
    }
    // every file in manifest order, as Python's verify; a browser only fetches what it uses
    const contents = new Map();
    for (const [name, entry] of Object.entries(m.files)) {
      if (wanted.has(name)) {
        const bytes = await source.read(name);
        contents.set(name, verify ? await checkFile(name, bytes, entry, source.sha256) : bytes);
      } else if (verify && source.verifiesUnused) await source.hash(name, entry);
    }
    for (const name of [recommendFile, textFile]) if (name) checkOnnx(contents.get(name), name);
    const dims = m.dims;
    const items = parseNpy(contents.get(spec.file), spec.file);
    if (items.dtype !== spec.dtype) throw fail(spec.file, `dtype is ${items.dtype}, the manifest says ${spec.dtype}`);
    if (items.shape.length !== 2 || items.shape[0] !== dims.n_items + 1 || items.shape[1] !== dims.dim) {
      throw fail(spec.file, `shape is ${shapeRepr(items.shape)}, expected (n_items + 1, dim) = (${dims.n_items + 1}, ${dims.dim})`);
    }
    let matrix = toFloat32(items);
    if (items.dtype !== "int8" && !matrix.every(Number.isFinite)) throw fail(spec.file, "contains NaN or infinite values");
    let scale = null;
    if (spec.scaleFile) {
      const s = parseNpy(contents.get(spec.scaleFile), spec.scaleFile);
      if (s.dtype !== "float32" || s.shape.length !== 1 || s.shape[0] !== dims.n_items + 1) {
        throw fail(spec.scaleFile, `expected float32 of shape (${dims.n_items + 1},), got ${s.dtype} ${shapeRepr(s.shape)}`);
      }
      if (!s.data.every((x) => Number.isFinite(x) && x >= 0)) throw fail(spec.scaleFile, "scales must be finite and non-negative");
      scale = s.data;
      matrix = dequantize(items.data, scale, dims.dim);
    }
    const pop = parseNpy(contents.get(m.popularity), m.popularity);
    if (!/^(float|int|uint)/.test(pop.dtype) || pop.shape.length !== 1 || pop.shape[0] !== dims.n_items + 1) {
      throw fail(m.popularity, `expected a numeric array of shape (${dims.n_items + 1},), got ${pop.dtype} ${shapeRepr(pop.shape)}`);
    }
    const popularity = toFloat32(pop);
    if (!popularity.every(Number.isFinite)) throw fail(m.popularity, "contains NaN or infinite values");
    const ids = parseItemIds(parseJson(contents.get(m.itemIds), m.itemIds), m.itemIds, dims.n_items);
    let tokenizerJson = null;
    if (textFile) {
      try {
        tokenizerJson = new TextDecoder("utf-8", { fatal: true }).decode(contents.get(m.tokenizer));
      } catch {
        throw fail(m.tokenizer, "not UTF-8 text");
      }
    }
    const rec = new this(source, m, precision);
    rec.graphFiles.recommend = recommendFile;
    rec.session = await rec.#session(contents.get(recommendFile), recommendFile, "recommend");
    if (textFile) {
      rec.graphFiles.text_encoder = textFile;
      rec.textSession = await rec.#session(contents.get(textFile), textFile, "text_encoder");
      rec.tokenizer = new TextTokenizer(tokenizerJson, dims.text_max_length, m.tokenizer);
    }
    const quant = scale ? { q: items.data, scale } : null;
    rec.#publish(Catalog.create(matrix, quant, items.dtype, ids, popularity));
    rec.bytesRead = source.bytesRead;
    rec.loadMs = performance.now() - started;
    return rec;
  }

  constructor(source, manifest, precision) {
    this.ort = source.ort;
    this.path = source.root;
    this.manifest = manifest;
    this.precision = precision;
    this.dim = manifest.dims.dim;
    this.graphFiles = {};
    this.behaviours = new Q.BehaviourMap(manifest.behaviourVocab, manifest.defaultBehaviour);
    this.sessionOptions = source.sessionOptions;
    this.session = null;
    this.textSession = null;
    this.tokenizer = null;
  }

  async #session(bytes, name, role) {
    let session;
    try {
      session = await this.ort.InferenceSession.create(bytes, this.sessionOptions);
    } catch (e) {
      const message = String(e?.message ?? e).trim().split("\n")[0] || e?.name;
      throw fail(name, `onnxruntime cannot load it (${message})`);
    }
    checkInterface(session, role, name, this.dim);
    return session;
  }

  #publish(catalog) {
    const order = [];
    for (let r = 1; r < catalog.nRows; r++) if (catalog.active[r]) order.push(r);
    order.sort((a, b) => catalog.popularity[b] - catalog.popularity[a] || a - b);
    const T = this.ort.Tensor;
    this.state = {
      catalog,
      byPopularity: order,
      matrix: new T("float32", catalog.matrix, [catalog.nRows, this.dim]),
      bias: new T("float32", catalog.bias, [1, catalog.nRows]),
    };
  }

  // --- recommending ---------------------------------------------------------------------

  /**
   * Top-k items for one history (original item ids, oldest first).
   * @param {Array<number|string>} history
   * @param {RecommendOptions} options
   * @returns {Promise<RecommendationList>}
   */
  async recommend(history, { k = 10, excludeSeen = true, behaviours = null, timestamps = null, candidates = null, exclude = null, strict = false, now = null } = {}) {
    const out = await this.#recommend([history], [behaviours], [timestamps], [now], k, excludeSeen, candidates, exclude, strict, () => "history");
    return out[0];
  }

  /**
   * recommend() for many histories in one graph run (same rules, same answers).
   * behaviours/timestamps: null or one array per history; now: null, one time for all or
   * one per history; candidates/exclude apply to every history.
   * @returns {Promise<RecommendationList[]>}
   */
  async recommendBatch(histories, { k = 10, excludeSeen = true, behaviours = null, timestamps = null, candidates = null, exclude = null, strict = false, now = null } = {}) {
    const hist = Q.asList(histories, "histories", Q.MAX_BATCH);
    const n = hist.length;
    const nows = Array.isArray(now) || ArrayBuffer.isView(now) ? Q.perHistory(now, n, "now") : new Array(n).fill(now);
    return this.#recommend(hist, Q.perHistory(behaviours, n, "behaviours"), Q.perHistory(timestamps, n, "timestamps"), nows, k, excludeSeen, candidates, exclude, strict, (i) => `histories[${i}]`);
  }

  async #recommend(hist, behs, tss, nows, k, excludeSeen, candidates, exclude, strict, name) {
    k = Q.checkK(k);
    Q.checkFlag(excludeSeen, "excludeSeen");
    Q.checkFlag(strict, "strict");
    const state = this.state;
    const cat = state.catalog;
    if (hist.length * Math.min(k, cat.nActive) > Q.MAX_RESULTS) {
      throw new Error(`${hist.length} histories x k=${k} would return more than ${Q.MAX_RESULTS} recommendations; split the batch or lower k`);
    }
    const batch = Q.normalise(hist, behs, tss, nows, cat, this.behaviours, strict, name);
    const bias = requestBias(cat, candidates, exclude);
    const chosen = [];
    batch.known.forEach((n, i) => n > 0 && chosen.push(i));
    const ranked = chosen.length ? await this.#rank(state, batch, chosen, k, bias, excludeSeen) : [];
    const maxLen = this.manifest.dims.max_len;
    const out = hist.map((_, i) => ({
      items: [],
      gate: null,
      unknownItems: batch.unknownItems[i],
      unknownBehaviours: batch.unknownBehaviours[i],
      fallback: null,
      nEvents: batch.nEvents[i],
      nUsed: Math.min(batch.known[i], maxLen),
    }));
    chosen.forEach((i, j) => {
      const { rows, scores, gate } = ranked[j];
      out[i].items = rows.map((r, t) => ({ itemId: cat.ids[r], score: scores[t], title: cat.titles[r] }));
      out[i].gate = gate;
    });
    for (const o of out) {
      if (o.gate !== null) continue;
      o.fallback = "popularity";
      const order = bias === cat.bias ? state.byPopularity : state.byPopularity.filter((r) => bias[r] > -Infinity);
      o.items = order.slice(0, k).map((r) => ({ itemId: cat.ids[r], score: cat.popularity[r], title: cat.titles[r] }));
    }
    return out;
  }

  /** [{rows, scores, gate}] of the histories `chosen`, from the recommend graph. */
  async #rank(state, batch, chosen, k, bias, excludeSeen) {
    const T = this.ort.Tensor;
    const cat = state.catalog;
    const w = batch.width;
    const feeds = {
      item_matrix: state.matrix,
      row_bias: bias === cat.bias ? state.bias : new T("float32", bias, [1, cat.nRows]),
      mask_seen: new T("bool", Uint8Array.of(excludeSeen ? 1 : 0), [1]),
      k: new T("int64", BigInt64Array.of(BigInt(Math.min(k, cat.nRows))), [1]),
    };
    const step = Math.max(1, Math.floor(MAX_CELLS / w));
    const out = [];
    for (let start = 0; start < chosen.length; start += step) {
      const part = chosen.slice(start, start + step);
      const used = part.length < chosen.length ? Math.max(...part.map((i) => batch.known[i])) : w;
      const pick = (src) => {
        const a = new BigInt64Array(part.length * used);
        part.forEach((i, j) => a.set(src.subarray(i * w + (w - used), (i + 1) * w), j * used));
        return new T("int64", a, [part.length, used]);
      };
      feeds.history_rows = pick(batch.rows);
      feeds.history_behaviours = pick(batch.behaviours);
      feeds.history_times = pick(batch.times);
      feeds.now = new T("int64", BigInt64Array.from(part, (i) => batch.now[i]), [part.length]);
      const res = await this.session.run(feeds);
      const rows = res.top_rows.data;
      const scores = res.top_scores.data;
      const kk = res.top_rows.dims[1];
      const users = res.user.data;
      part.forEach((_, j) => {
        if (!(scores[j * kk] > -Infinity) && !users.every(Number.isFinite)) {
          throw new Error("the user encoder produced non-finite values");
        }
        const r = [];
        const s = [];
        for (let t = 0; t < kk && scores[j * kk + t] > -Infinity; t++) {
          r.push(Number(rows[j * kk + t]));
          s.push(scores[j * kk + t]);
        }
        out.push({ rows: r, scores: s, gate: res.gate.data[j] });
      });
      for (const t of Object.values(res)) t.dispose?.();
    }
    return out;
  }

  // --- catalog updates ------------------------------------------------------------------

  /** Item vectors of `texts` from the bundle's text encoder (float32, texts x dim). */
  async encodeTexts(texts) {
    if (!this.textSession) throw new BundleError(`${this.path}: this bundle has no text encoder, so items cannot be added`);
    const T = this.ort.Tensor;
    const order = texts.map((_, i) => i).sort((a, b) => texts[a].length - texts[b].length);
    const names = new Set(this.textSession.inputNames);
    const vectors = new Float32Array(texts.length * this.dim);
    // an int8 text encoder quantizes a run's activations with one scale: one text per
    // run keeps each item's vector its own (as the Python runtime does)
    const step = /\.int8\.(onnx|ort)$/.test(this.graphFiles.text_encoder) ? 1 : TEXT_BATCH;
    for (let start = 0; start < texts.length; start += step) {
      const idx = order.slice(start, start + step);
      const t = this.tokenizer.encode(idx.map((i) => texts[i]));
      const feeds = { input_ids: new T("int64", t.ids, t.shape), attention_mask: new T("int64", t.mask, t.shape) };
      if (names.has("token_type_ids")) feeds.token_type_ids = new T("int64", t.types, t.shape);
      const { item_vector: v } = await this.textSession.run(feeds);
      idx.forEach((i, j) => vectors.set(v.data.subarray(j * this.dim, (j + 1) * this.dim), i * this.dim));
    }
    if (!vectors.every(Number.isFinite)) throw new Error("the text encoder produced non-finite values");
    return vectors;
  }

  /**
   * Cold start: encode `texts` with the bundle's text encoder and make the items
   * recommendable at once. Ids must be new (or removed earlier). Returns the number added.
   */
  async addItems(itemIds, texts, titles = null) {
    if (!this.textSession) throw new BundleError(`${this.path}: this bundle has no text encoder, so items cannot be added`);
    const ids = Q.asList(itemIds, "itemIds", Q.MAX_IDS);
    const txt = Q.asList(texts, "texts", Q.MAX_IDS);
    const ttl = titles === null ? new Array(ids.length).fill(null) : Q.asList(titles, "titles", Q.MAX_IDS);
    for (const [name, values] of [["texts", txt], ["titles", ttl]]) {
      if (values.length !== ids.length) throw new Error(`${name} has ${values.length} entries but itemIds has ${ids.length}`);
    }
    txt.forEach((t, i) => {
      if (typeof t !== "string") throw new Error(`texts[${i}] must be a str, got ${Q.typeName(t)}`);
      if (LONE_SURROGATE.test(t)) throw new Error(`texts[${i}] is not valid Unicode text (a lone surrogate)`);
    });
    ttl.forEach((t, i) => {
      if (t !== null && typeof t !== "string") throw new Error(`titles[${i}] must be a str or null, got ${Q.typeName(t)}`);
    });
    const idType = this.state.catalog.idType;
    const keys = ids.map((x, i) => Q.idKey(x, idType, `itemIds[${i}]`));
    keys.forEach((key, i) => {
      if (idType === "int" && !Number.isSafeInteger(key)) throw new Error(`itemIds[${i}] = ${ids[i]} is not a 64-bit int id`);
    });
    const dup = keys.filter((x, i) => keys.indexOf(x) !== i);
    if (dup.length) throw new Error(`itemIds has duplicates: ${[...new Set(dup)].slice(0, 10).join(", ")}`);
    if (!keys.length) return 0;
    checkNew(this.state.catalog, keys);
    const vectors = await this.encodeTexts(txt);
    checkNew(this.state.catalog, keys); // the catalog may have changed while encoding
    this.#publish(this.state.catalog.append(vectors, keys, ttl));
    return keys.length;
  }

  /** Stop recommending these items (they still count in histories). Returns how many. */
  removeItems(itemIds) {
    const ids = Q.asList(itemIds, "itemIds", Q.MAX_IDS);
    const cat = this.state.catalog;
    const rows = Q.lookup(ids, cat, (i) => `itemIds[${i}]`);
    const unknown = ids.filter((_, i) => rows[i] < 0);
    if (unknown.length) throw new Q.UnknownItemError(unknown);
    const active = [...new Set(rows)].filter((r) => cat.active[r]);
    if (active.length) this.#publish(cat.deactivate(active));
    return active.length;
  }

  /** Items that can be recommended now (removed ones excluded). */
  get nItems() {
    return this.state.catalog.nActive;
  }

  get itemIds() {
    const cat = this.state.catalog;
    return cat.ids.filter((_, r) => cat.active[r]);
  }

  /** [{itemId, title}] of the recommendable items (for a search box). */
  get items() {
    const cat = this.state.catalog;
    const out = [];
    for (let r = 1; r < cat.nRows; r++) if (cat.active[r]) out.push({ itemId: cat.ids[r], title: cat.titles[r] });
    return out;
  }

  /** The float32 vector the graphs read for an item id (null when unknown). */
  itemVector(itemId) {
    const cat = this.state.catalog;
    const row = cat.index.get(Q.idKey(itemId, cat.idType, "itemId"));
    return row === undefined ? null : cat.matrix.slice(row * this.dim, (row + 1) * this.dim);
  }

  get hasTextEncoder() {
    return this.textSession !== null;
  }

  async release() {
    await this.session?.release();
    await this.textSession?.release();
  }
}

function checkNew(cat, keys) {
  const present = keys.filter((k) => {
    const row = cat.index.get(k);
    return row !== undefined && cat.active[row];
  });
  if (present.length) {
    throw new Error(`itemIds already in the catalog: ${present.slice(0, 10).map((x) => (typeof x === "string" ? `'${x}'` : x)).join(", ")}`);
  }
}

/** The catalog's row bias, or this request's copy with candidates and exclude applied. */
function requestBias(cat, candidates, exclude) {
  if (candidates == null && exclude == null) return cat.bias;
  let bias;
  if (candidates == null) bias = cat.bias.slice();
  else {
    bias = new Float32Array(cat.nRows).fill(-Infinity);
    for (const r of Q.idRows(candidates, cat, "candidates")) bias[r] = cat.bias[r];
  }
  if (exclude != null) for (const r of Q.idRows(exclude, cat, "exclude")) bias[r] = -Infinity;
  return bias;
}

function dequantize(q, scale, dim) {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scale[Math.floor(i / dim)];
  return out;
}

/** numpy's rint: round half to even. */
const rint = (x) => {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** One immutable state of the catalog; updates return a new one. Row 0 is padding. */
class Catalog {
  static create(matrix, quant, dtype, { ids, titles, idType }, popularity) {
    const n = ids.length + 1;
    const active = new Uint8Array(n).fill(1);
    active[0] = 0;
    const index = new Map(ids.map((x, i) => [x, i + 1]));
    return new Catalog(matrix, quant, dtype, [null, ...ids], [null, ...titles], popularity, active, index, idType);
  }

  constructor(matrix, quant, dtype, ids, titles, popularity, active, index, idType) {
    Object.assign(this, { matrix, quant, dtype, ids, titles, popularity, active, index, idType });
    this.nRows = ids.length;
    this.nActive = active.reduce((a, b) => a + b, 0);
    this.bias = new Float32Array(this.nRows);
    active.forEach((a, r) => a || (this.bias[r] = -Infinity));
  }

  /** New rows for `keys`; the stored precision is kept (int8 rows get their own scale,
   *  float16 rows are rounded to float16), as the Python catalog does. */
  append(vectors, keys, titles) {
    const dim = vectors.length / keys.length;
    const stored = Float32Array.from(vectors);
    let quant = this.quant;
    if (quant) {
      const q = new Int8Array(quant.q.length + vectors.length);
      q.set(quant.q);
      const scale = new Float32Array(quant.scale.length + keys.length);
      scale.set(quant.scale);
      for (let i = 0; i < keys.length; i++) {
        let peak = 0;
        for (let j = 0; j < dim; j++) peak = Math.max(peak, Math.abs(vectors[i * dim + j]));
        const s = peak > 0 ? Math.fround(Math.fround(peak) / 127) : 1;
        scale[this.nRows + i] = s;
        for (let j = 0; j < dim; j++) {
          const v = Math.min(127, Math.max(-127, rint(Math.fround(vectors[i * dim + j] / s))));
          q[(this.nRows + i) * dim + j] = v;
          stored[i * dim + j] = Math.fround(v * s);
        }
      }
      quant = { q, scale };
    } else if (this.dtype === "float16") {
      for (let i = 0; i < stored.length; i++) stored[i] = roundHalf(stored[i]);
    }
    const matrix = new Float32Array(this.matrix.length + stored.length);
    matrix.set(this.matrix);
    matrix.set(stored, this.matrix.length);
    const popularity = new Float32Array(this.nRows + keys.length);
    popularity.set(this.popularity);
    const active = new Uint8Array(this.nRows + keys.length).fill(1);
    active.set(this.active);
    const index = new Map(this.index);
    keys.forEach((k, i) => index.set(k, this.nRows + i));
    return new Catalog(matrix, quant, this.dtype, [...this.ids, ...keys], [...this.titles, ...titles], popularity, active, index, this.idType);
  }

  deactivate(rows) {
    const active = this.active.slice();
    for (const r of rows) active[r] = 0;
    return new Catalog(this.matrix, this.quant, this.dtype, this.ids, this.titles, this.popularity, active, this.index, this.idType);
  }
}

/** A float32 rounded to the nearest float16 value (ties to even), as numpy's astype. */
function roundHalf(x) {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  return Math.sign(x) * rint(a / ulp) * ulp;
}
