// Runs the cases of js/test/expected.py through a JS Recommender (Node or browser) and
// compares the answers with the Python runtime's. Platform-free: the browser test loads
// this same file in the page.

/** A case request -> recommend() options. */
export function options(req) {
  return {
    k: req.k ?? 10,
    excludeSeen: req.exclude_seen ?? true,
    behaviours: req.behaviours ?? null,
    timestamps: req.timestamps ?? null,
    now: req.now ?? null,
    exclude: req.exclude ?? null,
    candidates: req.candidates ?? null,
  };
}

/** The JS answer in the shape of Python's RecommendationList.to_dict(). */
export function asDict(r) {
  return {
    items: r.items.map((x) => ({ item_id: x.itemId, score: x.score, title: x.title })),
    gate: r.gate,
    fallback: r.fallback,
    unknown_items: r.unknownItems,
    unknown_behaviours: r.unknownBehaviours,
    n_events: r.nEvents,
    n_used: r.nUsed,
  };
}

/**
 * Every answer for `cases` from `rec` (mutates its catalog: cold start, removal).
 * @param {{cold?: boolean, timing?: boolean}} opts
 */
export async function runCases(rec, cases, { cold = true } = {}) {
  const out = { requests: [] };
  for (const req of cases.requests) out.requests.push(asDict(await rec.recommend(req.history, options(req))));
  const b = cases.batch;
  out.batch = (await rec.recommendBatch(b.histories, { k: b.k })).map(asDict);
  out.demo = [];
  for (let n = 0; n <= (cases.demo ?? []).length; n++) out.demo.push(asDict(await rec.recommend(cases.demo.slice(0, n), { k: 10 })));
  if (cold && rec.hasTextEncoder) {
    const c = cases.cold;
    const vectors = await rec.encodeTexts(c.texts);
    const dim = rec.dim;
    out.cold = {
      vectors: c.texts.map((_, i) => Array.from(vectors.subarray(i * dim, (i + 1) * dim))),
      tokens: c.texts.map((t) => rec.tokenizer.encodeOne(t).ids),
    };
    await rec.addItems(c.ids, c.texts, c.ids.map((x) => `cold ${x}`));
    out.cold.vectors_stored = c.ids.map((x) => Array.from(rec.itemVector(x)));
    out.cold.requests = [];
    for (const req of c.requests) out.cold.requests.push(asDict(await rec.recommend(req.history, options(req))));
  }
  const r = cases.remove;
  out.remove = { removed: rec.removeItems(r.ids), requests: [] };
  for (const req of r.requests) out.remove.requests.push(asDict(await rec.recommend(req.history, options(req))));
  return out;
}

const cosine = (a, b) => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
};

/** Agreement of two lists of answers: identical id lists, largest score/gate differences. */
function agreement(pairs) {
  let identical = 0;
  let maxScore = 0;
  let maxGate = 0;
  const mismatches = [];
  for (const [e, g, where] of pairs) {
    const ids = (r) => JSON.stringify(r.items.map((x) => x.item_id));
    if (ids(e) === ids(g)) identical++;
    else mismatches.push({ where, expected: e.items.map((x) => x.item_id), got: g.items.map((x) => x.item_id) });
    // scores of the items both lists hold (a near tie may swap two of them)
    const scores = new Map(g.items.map((x) => [x.item_id, x.score]));
    for (const x of e.items) if (scores.has(x.item_id)) maxScore = Math.max(maxScore, Math.abs(x.score - scores.get(x.item_id)));
    if ((e.gate === null) !== (g.gate === null)) mismatches.push({ where, field: "gate", expected: e.gate, got: g.gate });
    else if (e.gate !== null) maxGate = Math.max(maxGate, Math.abs(e.gate - g.gate));
    for (const f of ["fallback", "unknown_items", "unknown_behaviours", "n_events", "n_used"]) {
      if (JSON.stringify(e[f]) !== JSON.stringify(g[f])) mismatches.push({ where, field: f, expected: e[f], got: g[f] });
    }
    const titles = (r) => JSON.stringify(r.items.map((x) => x.title));
    if (ids(e) === ids(g) && titles(e) !== titles(g)) mismatches.push({ where, field: "title" });
  }
  return {
    lists: pairs.length,
    identical,
    identicalShare: pairs.length ? identical / pairs.length : 1,
    maxScoreDiff: maxScore,
    maxGateDiff: maxGate,
    otherMismatches: mismatches.filter((m) => m.field).length,
    mismatches: mismatches.slice(0, 20),
  };
}

/**
 * Figures of agreement over the requests, the batch and the demo clicks (the user side),
 * the requests after the cold-start and removal steps apart (`cold`), and the cold-start
 * vectors: smallest cosine, identical token ids.
 */
export function compare(expected, got) {
  const pairs = (e, g, where) => e.map((x, i) => [x, g[i], `${where}[${i}]`]);
  const cold = Boolean(expected.cold && got.cold); // then the removal step follows it
  const removal = pairs(expected.remove.requests, got.remove.requests, "remove.requests");
  const out = agreement([
    ...pairs(expected.requests, got.requests, "requests"),
    ...pairs(expected.batch, got.batch, "batch"),
    ...(expected.demo && got.demo ? pairs(expected.demo, got.demo, "demo") : []),
    ...(cold ? [] : removal),
  ]);
  if (expected.remove.removed !== got.remove.removed) out.mismatches.push({ field: "removed" });
  if (cold) {
    out.cold = agreement([...pairs(expected.cold.requests, got.cold.requests, "cold.requests"), ...removal]);
    out.minCosine = Math.min(...expected.cold.vectors.map((v, i) => cosine(v, got.cold.vectors[i])));
    out.minCosineStored = Math.min(...expected.cold.vectors_stored.map((v, i) => cosine(v, got.cold.vectors_stored[i])));
    out.tokensIdentical = expected.cold.tokens.filter((t, i) => JSON.stringify(t) === JSON.stringify(got.cold.tokens[i])).length;
    out.texts = expected.cold.tokens.length;
  }
  return out;
}
