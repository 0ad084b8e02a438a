// One request normaliser: what callers pass (ids, behaviours, timestamps, now) -> the
// arrays the bundle's graphs read, or one Error naming the argument. The rules are
// edgerec.runtime.requests' (Python):
//
// - ids are the bundle's original ids. For an "int" catalog, integers (numbers or
//   bigints) and decimal strings ("50") are accepted; for a "str" catalog, strings, and
//   integers are looked up by their decimal form. Anything else (fractional numbers,
//   null, booleans, objects) is an error. Unknown ids are left out and reported
//   (strict: UnknownItemError).
// - behaviours are vocabulary entries of the bundle (behaviour_vocab): strings, or
//   numbers whose string form is one (rating 4 -> "4"). Values outside the vocabulary
//   are read as its first entry (index 0, "none": no behaviour known) and reported;
//   NaN, booleans and objects are errors. Without behaviours every event gets the
//   bundle's default_behaviour.
// - timestamps are seconds (finite numbers, floored, or bigints; |t| < 2**62). Without
//   them every gap is a zero gap and the request time is unknown. `now` likewise.

export const MAX_HISTORY = 100_000;
export const MAX_BATCH = 100_000;
export const MAX_IDS = 1_000_000;
export const MAX_BATCH_EVENTS = 10_000_000;
export const MAX_RESULTS = 10_000_000;
export const UNKNOWN_NOW = -(2n ** 63n); // the graphs' `now` for an unknown request time
const TS_LIMIT = 2n ** 62n;
const MAX_ID_DIGITS = 19;

/** History ids the catalog does not know, raised only with strict: true. */
export class UnknownItemError extends Error {
  constructor(unknown) {
    const shown = unknown.slice(0, 10).map(repr).join(", ");
    const more = unknown.length > 10 ? ` (and ${unknown.length - 10} more)` : "";
    super(`unknown item ids: ${shown}${more}`);
    this.name = "UnknownItemError";
    this.unknown = unknown;
  }
}

const repr = (x) => (typeof x === "string" ? `'${x}'` : String(x));

export function typeName(x) {
  if (x === null || x === undefined) return "NoneType";
  if (typeof x === "boolean") return "bool";
  if (typeof x === "number") return Number.isInteger(x) ? "int" : "float";
  if (typeof x === "bigint") return "int";
  if (typeof x === "string") return "str";
  if (Array.isArray(x)) return "list";
  return x.constructor?.name ?? typeof x;
}

export function checkK(k, name = "k") {
  if (!Number.isInteger(k) || k <= 0) throw new Error(`${name} must be a positive int, got ${typeName(k)} ${k}`);
  return k;
}

export function checkFlag(value, name) {
  if (typeof value !== "boolean") throw new Error(`${name} must be true or false, got ${typeName(value)} ${value}`);
  return value;
}

/** A finite, ordered sequence as an array; strings, maps, sets and plain objects refused. */
export function asList(value, name, limit) {
  let out;
  if (Array.isArray(value)) out = value;
  else if (ArrayBuffer.isView(value) && !(value instanceof DataView)) out = Array.from(value);
  else if (
    value === null ||
    value === undefined ||
    typeof value === "string" ||
    value instanceof Map ||
    value instanceof Set ||
    typeof value[Symbol.iterator] !== "function"
  ) {
    throw new Error(`${name} must be an ordered sequence, got ${typeName(value)}`);
  } else out = Array.from(value);
  if (out.length > limit) throw new Error(`${name} has more than ${limit} entries`);
  return out;
}

/** The catalog key of one id, or an Error for a value that is not an id. */
export function idKey(x, idType, where) {
  const isInt = (typeof x === "number" && Number.isInteger(x)) || typeof x === "bigint";
  if (!isInt && typeof x !== "string") throw new Error(`${where}: item ids must be int or str, got ${typeName(x)}`);
  if (idType === "str") return typeof x === "string" ? x : String(x);
  if (typeof x !== "string") return Number(x);
  const s = x.trim();
  const digits = s[0] === "+" || s[0] === "-" ? s.slice(1) : s;
  if (/^[0-9]+$/.test(digits) && digits.length <= MAX_ID_DIGITS) return Number(s);
  return x; // a string that cannot be an int id: unknown, not an error
}

/** Rows of a list of ids (-1 where unknown); where(i) names value i in errors. */
export function lookup(values, catalog, where) {
  const rows = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    const key = catalog.idType === "int" && typeof x === "number" && Number.isInteger(x) ? x : idKey(x, catalog.idType, where(i));
    rows[i] = catalog.index.get(key) ?? -1;
  }
  return rows;
}

/** Unique rows of the known ids of a candidates/exclude argument (unknown skipped). */
export function idRows(value, catalog, name) {
  const rows = lookup(asList(value, name, MAX_IDS), catalog, (i) => `${name}[${i}]`);
  return [...new Set(rows.filter((r) => r > 0))].sort((a, b) => a - b);
}

export class BehaviourMap {
  constructor(vocab, defaultValue) {
    this.byName = new Map(vocab.map((v, i) => [v, i]));
    this.default = this.byName.get(defaultValue);
  }

  /** The code of x, or undefined for a value outside the vocabulary. */
  code(x, where) {
    if (typeof x === "string") return this.byName.get(x) ?? this.byName.get(x.trim());
    if (typeof x === "bigint") return this.byName.get(String(x));
    if (typeof x !== "number") {
      throw new Error(`${where}: behaviours must be vocabulary strings or numbers, got ${typeName(x)}`);
    }
    if (!Number.isFinite(x)) throw new Error(`${where}: behaviour is ${pyFloat(x)}, not a vocabulary value`);
    return this.byName.get(String(x));
  }
}

const pyFloat = (f) => (Number.isNaN(f) ? "nan" : f > 0 ? "inf" : "-inf");

/** Whole seconds (bigint) of an integer or a finite number (floored). */
export function seconds(x, where) {
  let t;
  if (typeof x === "bigint") t = x;
  else if (typeof x === "number") {
    if (!Number.isFinite(x)) throw new Error(`${where} is ${pyFloat(x)}: times must be finite seconds`);
    t = BigInt(Math.floor(x));
  } else throw new Error(`${where}: expected seconds as int or float, got ${typeName(x)}`);
  if (!(-TS_LIMIT < t && t < TS_LIMIT)) throw new Error(`${where} = ${x} is out of range (|t| < 2**62 seconds)`);
  return t;
}

function flat(values, lengths, name, what) {
  if (values.every((v) => v == null)) return null;
  const out = [];
  values.forEach((v, i) => {
    if (v == null) throw new Error(`${what} given for some histories but not for ${name(i)}`);
    const items = asList(v, `${what} of ${name(i)}`, MAX_HISTORY);
    if (items.length !== lengths[i]) {
      throw new Error(`${what} has ${items.length} entries but ${name(i)} has ${lengths[i]} events`);
    }
    for (const x of items) out.push(x);
  });
  return out;
}

export function perHistory(values, n, name) {
  if (values == null) return new Array(n).fill(null);
  const out = asList(values, name, MAX_BATCH);
  if (out.length !== n) throw new Error(`${name} has ${out.length} entries for ${n} histories`);
  return out;
}

/**
 * Histories as the graphs read them (docs/bundle.md): right-aligned [B, E] rows,
 * behaviour codes and times (row 0 / 0 / 0 left of shorter histories), request times,
 * and what the caller should hear about each history.
 */
export function normalise(histories, behaviours, timestamps, nows, catalog, behaviourMap, strict, name) {
  const lists = histories.map((h, i) => asList(h, name(i), MAX_HISTORY));
  const lengths = lists.map((l) => l.length);
  const total = lengths.reduce((a, b) => a + b, 0);
  if (total > MAX_BATCH_EVENTS) throw new Error(`histories hold more than ${MAX_BATCH_EVENTS} events; split the batch`);
  const b = lists.length;
  const owner = new Int32Array(total);
  const offsets = [];
  let at = 0;
  lists.forEach((l, i) => {
    offsets.push(at);
    owner.fill(i, at, at + l.length);
    at += l.length;
  });
  const where = (j) => `${name(owner[j])}[${j - offsets[owner[j]]}]`;
  const flatIds = lists.flat();
  const rows = lookup(flatIds, catalog, where);
  const behValues = flat(behaviours, lengths, name, "behaviours");
  const codes = new Array(total).fill(behaviourMap.default);
  const unknownBehaviours = Array.from({ length: b }, () => []);
  if (behValues !== null) {
    behValues.forEach((x, j) => {
      const c = behaviourMap.code(x, `behaviours of ${where(j)}`);
      if (c === undefined) unknownBehaviours[owner[j]].push(x);
      codes[j] = c ?? 0;
    });
  }
  const tsValues = flat(timestamps, lengths, name, "timestamps");
  const times = tsValues === null ? null : tsValues.map((x, j) => seconds(x, `timestamps of ${where(j)}`));
  const now = new BigInt64Array(b).fill(UNKNOWN_NOW);
  if (tsValues !== null) nows.forEach((t, i) => (now[i] = t == null ? UNKNOWN_NOW : seconds(t, "now")));
  const unknownItems = Array.from({ length: b }, () => []);
  const known = new Array(b).fill(0);
  for (let j = 0; j < total; j++) {
    if (rows[j] > 0) known[owner[j]]++;
    else unknownItems[owner[j]].push(flatIds[j]);
  }
  if (strict && unknownItems.some((u) => u.length)) {
    throw new UnknownItemError([...new Set(unknownItems.flat())]);
  }
  const width = Math.max(1, ...known);
  const R = new BigInt64Array(b * width);
  const B = new BigInt64Array(b * width);
  const T = new BigInt64Array(b * width);
  const filled = new Array(b).fill(0);
  for (let j = 0; j < total; j++) {
    if (rows[j] <= 0) continue;
    const h = owner[j];
    const cell = h * width + (width - known[h]) + filled[h]++;
    R[cell] = BigInt(rows[j]);
    B[cell] = BigInt(codes[j]);
    if (times !== null) T[cell] = times[j];
  }
  return { rows: R, behaviours: B, times: T, now, width, known, nEvents: lengths, unknownItems, unknownBehaviours };
}
