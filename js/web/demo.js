// The demo page: search the catalog, click liked items, recommendations update per click.
import { Recommender } from "/src/browser.js";

const $ = (id) => document.getElementById(id);
const bundle = new URLSearchParams(location.search).get("bundle") ?? "/bundle/";
const state = { rec: null, history: [], items: [] };
window.edgerecDemo = state; // for tests and the console

const li = (text, id, onClick, score) => {
  const el = document.createElement("li");
  const b = document.createElement("button");
  b.type = "button";
  b.dataset.id = String(id);
  b.textContent = text;
  if (score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = score.toFixed(3);
    b.append(s);
  }
  b.addEventListener("click", onClick);
  el.append(b);
  return el;
};

const label = (item) => item.title ?? String(item.itemId);

function search() {
  const q = $("search").value.trim().toLowerCase();
  const hits = q ? state.items.filter((x) => label(x).toLowerCase().includes(q)).slice(0, 12) : [];
  $("results").replaceChildren(...hits.map((x) => li(label(x), x.itemId, () => like(x))));
}

async function like(item) {
  state.history.push(item);
  $("history").replaceChildren(
    ...state.history.map((x) => {
      const el = document.createElement("li");
      el.dataset.id = String(x.itemId);
      el.textContent = label(x);
      return el;
    }),
  );
  await refresh();
}

async function refresh() {
  const t0 = performance.now();
  const out = await state.rec.recommend(state.history.map((x) => x.itemId), { k: 10 });
  const ms = performance.now() - t0;
  $("recs").replaceChildren(...out.items.map((x) => li(label(x), x.itemId, () => like(x), x.score)));
  const gate = out.gate;
  $("gate").querySelector(".long").style.width = gate === null ? "50%" : `${(gate * 100).toFixed(1)}%`;
  $("gate-value").value = gate === null ? "–" : gate.toFixed(2);
  $("gate").dataset.gate = gate === null ? "" : String(gate);
  $("timing").textContent = out.fallback
    ? "no history yet: the most popular items"
    : `recommend(): ${ms.toFixed(1)} ms for ${state.history.length} events`;
  state.last = out;
  document.body.dataset.updates = String(Number(document.body.dataset.updates ?? 0) + 1);
}

async function main() {
  const t0 = performance.now();
  state.rec = await Recommender.load(bundle, { textEncoder: false });
  state.items = state.rec.items;
  const kb = (state.rec.bytesRead / 1024).toFixed(0);
  $("status").textContent = `${state.items.length} items · bundle ${kb} KiB verified (sha256) and loaded in ${(performance.now() - t0).toFixed(0)} ms`;
  $("search").disabled = false;
  $("search").addEventListener("input", search);
  $("clear").addEventListener("click", async () => {
    state.history = [];
    $("history").replaceChildren();
    await refresh();
  });
  await refresh();
  document.body.dataset.ready = "1";
}

main().catch((e) => {
  $("status").textContent = `error: ${e.message}`;
  document.body.dataset.error = e.message;
  throw e;
});
