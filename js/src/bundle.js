// Reading and verifying an edgerec bundle (docs/bundle.md, format 2) without trusting it.
//
// The JavaScript twin of src/edgerec/runtime/bundle.py: the same checks in the same
// order, failing with the same messages ("items.npy: sha256 mismatch (...)"). The
// platform (Node or browser) supplies how to read a file and how to hash it; this module
// only checks bytes and JSON.

export const FORMAT = "edgerec-bundle";
export const FORMAT_VERSION = 2;
export const MANIFEST = "manifest.json";
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
export const N_GAP_BUCKETS = 34; // edgerec.features.N_GAP_BUCKETS
const ITEM_DTYPES = ["float32", "float16", "int8"];
const PRECISIONS = ["fp32", "fp16", "int8"];
const ROLES = ["recommend", "user_encoder", "text_encoder"];
const SCORERS = ["shortlist", "topk", "topk_fp16"];

/** A bundle that fails verification; the message names the file and the problem. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

export const fail = (where, problem) => new BundleError(`${where}: ${problem}`);

// --- Python's repr, so that messages read exactly as edgerec.runtime's -----------------

/** repr() of a JSON value as Python would print it after json.loads. */
export function pyRepr(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    const body = v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
    return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
  }
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : pyFloat(v);
  if (typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
}

const pyFloat = (f) => (Number.isFinite(f) ? String(f) : Number.isNaN(f) ? "nan" : f > 0 ? "inf" : "-inf");
const pyTuple = (xs) => (xs.length === 1 ? `(${pyRepr(xs[0])},)` : `(${xs.map(pyRepr).join(", ")})`);

/** type(value).__name__ of a JSON value. */
export function pyType(v) {
  if (v === null || v === undefined) return "NoneType";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "string") return "str";
  if (Array.isArray(v)) return "list";
  return "dict";
}

const isDict = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function req(d, key, kind, where = MANIFEST) {
  if (!Object.hasOwn(d, key)) throw fail(where, `missing key ${pyRepr(key)}`);
  const value = d[key];
  if (pyType(value) !== kind) throw fail(where, `${pyRepr(key)} must be ${kind}, got ${pyType(value)}`);
  return value;
}

function positive(d, key, where) {
  const value = req(d, key, "int", where);
  if (value < 1 || value > 2 ** 31 - 1) throw fail(where, `${pyRepr(key)} out of range (${value})`);
  return value;
}

/** A manifest path must be a plain file name: no directories, no '..', not absolute. */
export function checkName(name, what) {
  if (typeof name !== "string" || !name) {
    throw fail(MANIFEST, `${what}: file name must be a non-empty string, got ${pyRepr(name)}`);
  }
  const bad = name === "." || name === ".." || /[/\\\x00]/.test(name);
  if (bad || (name.length >= 2 && name[1] === ":") || name === MANIFEST) {
    throw fail(MANIFEST, `${what}: ${pyRepr(name)} is not a plain file name inside the bundle`);
  }
  return name;
}

function fileMap(obj, what, keys) {
  if (!isDict(obj) || Object.keys(obj).length === 0) throw fail(MANIFEST, `${what} must map names to file names`);
  for (const [key, name] of Object.entries(obj)) {
    if (!keys.includes(key)) {
      throw fail(MANIFEST, `${what}: unknown entry ${pyRepr(key)} (expected one of ${pyTuple(keys)})`);
    }
    checkName(name, `${what}.${key}`);
  }
  return { ...obj };
}

/**
 * The parsed manifest (edgerec.runtime.bundle.parse_manifest); `raw` keeps every key.
 * @param {unknown} obj the parsed manifest.json
 */
export function parseManifest(obj) {
  if (!isDict(obj)) throw fail(MANIFEST, "not a JSON object");
  if (obj.format !== FORMAT) throw fail(MANIFEST, `not an edgerec bundle (format ${pyRepr(obj.format)})`);
  const version = req(obj, "format_version", "int");
  if (version !== FORMAT_VERSION) {
    const hint =
      version < FORMAT_VERSION ? "re-export it with this edgerec (edgerec export RUN --out BUNDLE)" : "upgrade edgerec";
    throw fail(MANIFEST, `bundle format version ${version}, this runtime reads version ${FORMAT_VERSION}: ${hint}`);
  }
  const d = req(obj, "dims", "dict");
  const w = `${MANIFEST} dims`;
  const dims = {};
  for (const k of ["dim", "n_items", "max_len", "window", "n_behaviours", "n_gap_buckets", "text_max_length"]) {
    dims[k] = positive(d, k, w);
  }
  if (dims.n_gap_buckets !== N_GAP_BUCKETS) {
    throw fail(w, `n_gap_buckets is ${dims.n_gap_buckets}, this runtime's is ${N_GAP_BUCKETS}`);
  }
  const vocab = req(obj, "behaviour_vocab", "list");
  if (!vocab.every((v) => typeof v === "string") || new Set(vocab).size !== vocab.length) {
    throw fail(MANIFEST, "behaviour_vocab must be a list of distinct strings");
  }
  if (vocab.length !== dims.n_behaviours) {
    throw fail(MANIFEST, `behaviour_vocab has ${vocab.length} entries, dims say ${dims.n_behaviours}`);
  }
  const defaultBehaviour = req(obj, "default_behaviour", "str");
  if (!vocab.includes(defaultBehaviour)) {
    throw fail(MANIFEST, `default_behaviour ${pyRepr(defaultBehaviour)} is not in behaviour_vocab`);
  }
  const precisions = req(obj, "precisions", "list");
  if (!precisions.length || precisions.some((p) => !PRECISIONS.includes(p))) {
    throw fail(MANIFEST, `precisions must be a non-empty subset of ${pyTuple(PRECISIONS)}`);
  }
  const defaultPrecision = req(obj, "default_precision", "str");
  if (!precisions.includes(defaultPrecision)) {
    throw fail(MANIFEST, `default_precision ${pyRepr(defaultPrecision)} is not in precisions`);
  }
  const graphs = {};
  for (const [role, variants] of Object.entries(req(obj, "graphs", "dict"))) {
    if (!ROLES.includes(role)) throw fail(MANIFEST, `unknown graph role ${pyRepr(role)} (expected ${pyTuple(ROLES)})`);
    graphs[role] = fileMap(variants, `graphs.${role}`, PRECISIONS);
  }
  for (const role of ["recommend", "user_encoder"]) {
    if (!graphs[role]) throw fail(MANIFEST, `graphs.${role} is missing`);
  }
  const scorers = fileMap(req(obj, "scorers", "dict"), "scorers", SCORERS);
  const requestTime = req(obj, "request_time", "bool");
  const im = req(obj, "item_matrix", "dict");
  const dtype = req(im, "dtype", "str", `${MANIFEST} item_matrix`);
  if (!ITEM_DTYPES.includes(dtype)) {
    throw fail(MANIFEST, `item_matrix.dtype must be one of ${pyTuple(ITEM_DTYPES)}, got ${pyRepr(dtype)}`);
  }
  const scaleFile = im.scale_file;
  if ((dtype === "int8") !== Boolean(scaleFile)) {
    throw fail(MANIFEST, "item_matrix: an int8 matrix needs a scale_file, others none");
  }
  const itemMatrix = {
    file: checkName(im.file ?? null, "item_matrix.file"),
    dtype,
    scaleFile: scaleFile ? checkName(scaleFile, "item_matrix.scale_file") : null,
  };
  const tokenizer = obj.tokenizer ?? null;
  if (tokenizer !== null) checkName(tokenizer, "tokenizer");
  if (graphs.text_encoder && !tokenizer) throw fail(MANIFEST, "a text_encoder graph needs a tokenizer file");
  const files = {};
  for (const [name, entry] of Object.entries(req(obj, "files", "dict"))) {
    checkName(name, "files");
    const sha = isDict(entry) ? entry.sha256 : undefined;
    const size = isDict(entry) ? entry.size : undefined;
    if (typeof sha !== "string" || !/^[0-9a-f]{64}$/.test(sha)) {
      throw fail(MANIFEST, `files.${name}: sha256 must be 64 lowercase hex digits`);
    }
    if (pyType(size) !== "int" || size < 0) throw fail(MANIFEST, `files.${name}: size must be a non-negative integer`);
    files[name] = { sha256: sha, size };
  }
  const m = {
    formatVersion: version,
    edgerecVersion: String(obj.edgerec_version ?? "?"),
    dims,
    behaviourVocab: vocab,
    defaultBehaviour,
    precisions,
    defaultPrecision,
    graphs,
    scorers,
    requestTime,
    itemMatrix,
    itemIds: checkName(req(obj, "item_ids", "str"), "item_ids"),
    popularity: checkName(req(obj, "popularity", "str"), "popularity"),
    tokenizer,
    files,
    raw: obj,
  };
  for (const name of referencedFiles(m)) {
    if (!files[name]) throw fail(MANIFEST, `${name} is used but not listed in files (no checksum)`);
  }
  return m;
}

export function referencedFiles(m) {
  const names = [m.itemMatrix.file, m.itemIds, m.popularity, ...Object.values(m.scorers)];
  for (const x of [m.itemMatrix.scaleFile, m.tokenizer]) if (x) names.push(x);
  for (const variants of Object.values(m.graphs)) names.push(...Object.values(variants));
  return [...new Set(names)];
}

/** The role's file for `precision` (then the bundle's default, then fp32, else any). */
export function graphFile(m, role, precision) {
  const variants = m.graphs[role];
  if (!variants) return null;
  for (const p of [precision, m.defaultPrecision, "fp32"]) if (variants[p]) return variants[p];
  return Object.values(variants)[0];
}

/** The precision asked for, else the bundle's default (an fp16 default gives way on a CPU). */
export function choosePrecision(m, precision) {
  if (precision != null) {
    if (!m.precisions.includes(precision)) {
      throw new Error(`precision ${pyRepr(precision)} is not in this bundle (it has ${m.precisions.join(", ")})`);
    }
    return precision;
  }
  if (m.defaultPrecision === "fp16") return ["int8", "fp32"].find((p) => m.precisions.includes(p)) ?? "fp16";
  return m.defaultPrecision;
}

/** file -> role of every graph in the bundle. */
export function graphRoles(m) {
  const roles = {};
  for (const [role, variants] of Object.entries(m.graphs)) for (const f of Object.values(variants)) roles[f] = role;
  for (const [scorer, f] of Object.entries(m.scorers)) roles[f] = scorer;
  return roles;
}

// --- files -----------------------------------------------------------------------------

/**
 * The file's bytes after checking size and sha256 against the manifest.
 * @param {Uint8Array} bytes as read
 * @param {{sha256: string, size: number}} entry
 * @param {(b: Uint8Array) => Promise<string>} sha256
 */
export async function checkFile(name, bytes, entry, sha256) {
  if (bytes.length !== entry.size) throw fail(name, `size is ${bytes.length} bytes, manifest says ${entry.size}`);
  const digest = await sha256(bytes);
  if (digest !== entry.sha256) {
    throw fail(name, `sha256 mismatch (file ${digest.slice(0, 12)}..., manifest ${entry.sha256.slice(0, 12)}...)`);
  }
  return bytes;
}

export function parseJson(bytes, name) {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw fail(name, `not valid JSON (${e.message})`);
  }
}

const NPY_DTYPES = {
  f4: ["float32", Float32Array],
  f8: ["float64", Float64Array],
  f2: ["float16", Uint16Array], // raw halves; converted where used
  i1: ["int8", Int8Array],
  i2: ["int16", Int16Array],
  i4: ["int32", Int32Array],
  i8: ["int64", BigInt64Array],
  u1: ["uint8", Uint8Array],
  u2: ["uint16", Uint16Array],
  u4: ["uint32", Uint32Array],
  u8: ["uint64", BigUint64Array],
  b1: ["bool", Uint8Array],
};

/**
 * A .npy file as {dtype, shape, data}; refuses object dtypes and anything malformed.
 * @param {Uint8Array} bytes
 */
export function parseNpy(bytes, name) {
  let header, offset;
  try {
    const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
    if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error("the magic string is not correct");
    const major = bytes[6];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let len;
    if (major === 1) [len, offset] = [view.getUint16(8, true), 10];
    else if (major === 2 || major === 3) [len, offset] = [view.getUint32(8, true), 12];
    else throw new Error(`unsupported .npy version ${major}`);
    if (offset + len > bytes.length) throw new Error("the header is truncated");
    header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(offset, offset + len));
    offset += len;
  } catch (e) {
    throw fail(name, `not a valid .npy file (ValueError: ${e.message})`);
  }
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    if (/'descr':\s*\[/.test(header)) throw fail(name, "unsupported dtype (a structured dtype)");
    throw fail(name, `not a valid .npy file (ValueError: cannot parse header ${pyRepr(header.trim())})`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr.includes("O")) throw fail(name, "object arrays are refused (they would need pickle)");
  const order = descr[0];
  const known = NPY_DTYPES[descr.slice(1)];
  if (order === ">" || !"<|=".includes(order) || !known) throw fail(name, `unsupported dtype ${descr}`);
  const [dtype, Kind] = known;
  const count = shape.reduce((a, b) => a * b, 1);
  const need = count * Kind.BYTES_PER_ELEMENT;
  if (bytes.length - offset !== need) {
    throw fail(name, `data is ${bytes.length - offset} bytes but shape ${pyTuple(shape)} of ${dtype} needs ${need}`);
  }
  if (fortran === "True" && shape.length > 1) throw fail(name, "Fortran-ordered arrays are not supported");
  // a copy, aligned for the typed array (the .npy header leaves data 64-byte aligned in
  // the file, not necessarily in the buffer it arrived in)
  const data = new Kind(bytes.slice(offset, offset + need).buffer);
  return { dtype, shape, data };
}

export const shapeRepr = pyTuple;

/** float32 values of an array (float16 and integer arrays converted). */
export function toFloat32(arr) {
  if (arr.dtype === "float32") return arr.data;
  if (arr.dtype === "float16") return Float32Array.from(arr.data, halfToFloat);
  return Float32Array.from(arr.data, Number);
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** The ids, titles and id type of items.json (edgerec.runtime.bundle.parse_item_ids). */
export function parseItemIds(obj, name, nItems) {
  if (!isDict(obj)) throw fail(name, "expected a JSON object with ids, titles and id_type");
  const idType = obj.id_type ?? "int";
  if (idType !== "int" && idType !== "str") throw fail(name, `id_type must be 'int' or 'str', got ${pyRepr(idType)}`);
  const ids = obj.ids;
  if (!Array.isArray(ids)) throw fail(name, "ids must be a list");
  if (ids.length !== nItems) throw fail(name, `${ids.length} ids but the manifest says n_items = ${nItems}`);
  ids.forEach((x, i) => {
    if (pyType(x) !== idType) throw fail(name, `ids[${i}] is ${pyRepr(x)}, expected ${idType}`);
  });
  if (new Set(ids).size !== ids.length) throw fail(name, "ids are not unique");
  const titles = obj.titles && obj.titles.length !== 0 ? obj.titles : new Array(nItems).fill(null);
  if (!Array.isArray(titles) || titles.length !== nItems) throw fail(name, `titles must be a list of ${nItems} strings`);
  if (!titles.every((t) => t === null || typeof t === "string")) throw fail(name, "titles must be strings (or null)");
  return { ids, titles, idType };
}

// --- ONNX graphs -----------------------------------------------------------------------

/** Refuse graphs that do not parse or whose tensors live in external files. */
export function checkOnnx(bytes, name) {
  if (name.endsWith(".ort")) return; // ORT format (flatbuffers) has no external data
  let external;
  try {
    external = externalTensors(bytes);
  } catch (e) {
    throw fail(name, `not a valid ONNX model (${e.message})`);
  }
  if (external.length) {
    const shown = external.slice(0, 5).join(", ");
    throw fail(name, `references external data (${shown}); bundles must embed every tensor`);
  }
}

// A read-only walk of the protobuf wire format to every TensorProto (as onnxcheck.py):
// message kind -> {field number: kind of the message in it}
const CHILDREN = {
  model: { 7: "graph", 25: "function" },
  graph: { 1: "node", 5: "tensor", 15: "sparse" },
  function: { 7: "node" },
  node: { 5: "attribute" },
  attribute: { 5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse" },
  sparse: { 1: "tensor", 2: "tensor" },
};

function varint(buf, pos, end) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= end) throw new Error("truncated varint");
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if (!(b & 0x80)) return [result, pos];
    shift += 7n;
    if (shift > 63n) throw new Error("varint too long");
  }
}

function* fields(buf, start, end) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(buf, pos, end);
    const number = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (number === 0) throw new Error("field number 0");
    if (wire === 0) {
      let value;
      [value, pos] = varint(buf, pos, end);
      yield [number, wire, value, pos];
      continue;
    }
    let size;
    if (wire === 2) {
      let s;
      [s, pos] = varint(buf, pos, end);
      size = Number(s);
    } else if (wire === 1 || wire === 5) size = wire === 1 ? 8 : 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (pos + size > end) throw new Error("field runs past its message");
    yield [number, wire, pos, pos + size];
    pos += size;
  }
}

function walk(buf, a, b, kind, found, depth) {
  if (depth > 48) throw new Error("subgraphs nested too deeply");
  for (const [num, wire, x, y] of fields(buf, a, b)) {
    if (wire !== 2) continue;
    const child = CHILDREN[kind][num];
    if (child === "tensor") {
      let tname = "?";
      let external = false;
      for (const [n2, w2, x2, y2] of fields(buf, x, y)) {
        if (n2 === 8 && w2 === 2) tname = new TextDecoder().decode(buf.subarray(x2, y2));
        else if ((n2 === 13 && w2 === 2) || (n2 === 14 && w2 === 0 && x2 === 1n)) external = true;
      }
      if (external) found.push(tname);
    } else if (child !== undefined) walk(buf, x, y, child, found, depth + (child === "graph" ? 1 : 0));
  }
}

export function externalTensors(bytes) {
  const found = [];
  walk(bytes, 0, bytes.length, "model", found, 0);
  return found;
}

// graph interfaces (docs/bundle.md): name -> [onnxruntime type, rank]
const I64 = "tensor(int64)";
const F32 = "tensor(float)";
const REQUEST = {
  history_rows: [I64, 2],
  history_behaviours: [I64, 2],
  history_times: [I64, 2],
  now: [I64, 1],
  item_matrix: [F32, 2],
};
export const INTERFACES = {
  recommend: [
    { ...REQUEST, row_bias: [F32, 2], mask_seen: ["tensor(bool)", 1], k: [I64, 1] },
    { top_rows: [I64, 2], top_scores: [F32, 2], user: [F32, 2], gate: [F32, 1] },
  ],
  user_encoder: [REQUEST, { user: [F32, 2], gate: [F32, 1], attention: [F32, 2] }],
  text_encoder: [
    { input_ids: [I64, 2], attention_mask: [I64, 2], "token_type_ids?": [I64, 2] },
    { item_vector: [F32, 2] },
  ],
};
// the inputs and outputs whose last axis is the scoring dimension, per role
const DIM_VALUES = { recommend: ["item_matrix", "user"], user_encoder: ["item_matrix", "user"], text_encoder: ["item_vector"] };
// onnxruntime-common's tensor types -> the type strings of onnxruntime's Python API
const ORT_TYPES = {
  int64: I64,
  float32: F32,
  bool: "tensor(bool)",
  uint8: "tensor(uint8)",
  int8: "tensor(int8)",
  int32: "tensor(int32)",
  float16: "tensor(float16)",
  float64: "tensor(double)",
  string: "tensor(string)",
};

const pyList = (xs) => `[${[...xs].sort().map(pyRepr).join(", ")}]`;

/**
 * The session's inputs and outputs are exactly what `role` needs (docs/bundle.md).
 * @param {import("onnxruntime-common").InferenceSession} session
 */
export function checkInterface(session, role, name, dim) {
  const [wantIn, wantOut] = INTERFACES[role];
  for (const [kind, values, want] of [
    ["input", session.inputMetadata, wantIn],
    ["output", session.outputMetadata, wantOut],
  ]) {
    const got = new Map(values.map((v) => [v.name, v]));
    const optional = new Set(Object.keys(want).filter((k) => k.endsWith("?")).map((k) => k.slice(0, -1)));
    const names = new Set(Object.keys(want).map((k) => k.replace(/\?$/, "")));
    const required = [...names].filter((k) => !optional.has(k));
    if (!required.every((k) => got.has(k)) || ![...got.keys()].every((k) => names.has(k))) {
      throw fail(name, `graph ${kind}s are ${pyList(got.keys())}, a ${role} graph has ${pyList(names)}`);
    }
    for (const [key, value] of got) {
      const [dtype, rank] = want[key] ?? want[`${key}?`];
      const type = value.isTensor ? (ORT_TYPES[value.type] ?? `tensor(${value.type})`) : "non-tensor";
      const r = value.isTensor ? value.shape.length : 0;
      if (type !== dtype || r !== rank) {
        throw fail(name, `${kind} ${pyRepr(key)} is ${type} of rank ${r}, expected ${dtype} of rank ${rank}`);
      }
    }
  }
  const shapes = new Map([...session.inputMetadata, ...session.outputMetadata].map((v) => [v.name, v.shape]));
  for (const key of DIM_VALUES[role]) {
    const shape = shapes.get(key);
    const last = shape[shape.length - 1];
    if (typeof last === "number" && last >= 0 && last !== dim) {
      throw fail(name, `${pyRepr(key)} has dimension ${last}, the manifest says ${dim}`);
    }
  }
}

