"""What the Python runtime (``edgerec.runtime``) answers, as JSON for the JS parity tests.

    python js/test/expected.py fixtures OUT      # tiny bundles + cases + expected answers
    python js/test/expected.py cases BUNDLE OUT.json [--n N] [--histories H.json]
    python js/test/expected.py expect BUNDLE CASES.json OUT.json

``cases`` writes random requests over a bundle's catalog (every option of
``recommend``: timestamps and ``now``, behaviours in and out of the vocabulary, unknown
ids, ``exclude``, ``candidates``, ``exclude_seen=False``, histories longer than
``max_len``, all-unknown histories), a batch, a cold-start step (``add_items`` then
requests) and a removal step. ``expect`` runs them through ``Recommender`` and writes
every answer (``to_dict``) and the cold-start item vectors. The JS side
(js/test/parity.js) runs the same cases and compares.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

COLD_TEXTS = [
    "action space story",
    "love drama night city",
    "A quiet comedy about music, crime and a long night in the city.",
    "horror",
    "war story war story war story " * 20,
    "",
]
# Only for real (BERT-family) tokenizers: tokenizers.js's ``Whitespace`` pre-tokenizer
# (the toy bundles' word-level tokenizer) splits on ASCII ``\w`` where the Rust one splits
# on Unicode word characters, so non-ASCII text tokenizes differently there.
UNICODE_TEXTS = [
    "Café Müller: ünïcödé 日本語 🎬 text",
    "Amélie (Le Fabuleux Destin d'Amélie Poulain) (2001)",
]


def _ids(path: Path) -> tuple[list, list, int]:
    m = json.loads((path / "manifest.json").read_text())
    items = json.loads((path / m["item_ids"]).read_text())
    return items["ids"], m["behaviour_vocab"], m["dims"]["max_len"]


def _request(rng: random.Random, ids: list, vocab: list, max_len: int, history: list | None = None):
    if history is None:
        n = rng.choice([1, 2, 3, rng.randint(1, max_len), rng.randint(max_len, max_len + 8)])
        history = [rng.choice(ids) for _ in range(n)]
    n = len(history)
    req: dict = {"history": list(history), "k": rng.choice([10, 10, 10, 1, 5, 25])}
    if rng.random() < 0.5:
        t0 = rng.randint(8 * 10**8, 9 * 10**8)
        times = sorted(t0 + rng.randint(0, 10**7) for _ in range(n))
        req["timestamps"] = times
        req["now"] = rng.choice([None, times[-1] + rng.randint(0, 10**6)])
    if rng.random() < 0.4:
        req["behaviours"] = [rng.choice([*vocab, "bogus"]) for _ in range(n)]
    if rng.random() < 0.15:
        req["history"] = [*req["history"], rng.choice([999_999_999, "nope"])]
        for key in ("timestamps", "behaviours"):
            if key in req:
                req[key] = [*req[key], req[key][-1]]
    if rng.random() < 0.15:
        req["exclude"] = rng.sample(ids, min(5, len(ids)))
    if rng.random() < 0.1:
        req["candidates"] = rng.sample(ids, min(15, len(ids)))
    if rng.random() < 0.1:
        req["exclude_seen"] = False
    return req


def make_cases(
    bundle: Path, n: int, seed: int = 0, histories: list | None = None, unicode: bool = True
) -> dict:
    ids, vocab, max_len = _ids(bundle)
    texts = COLD_TEXTS + (UNICODE_TEXTS if unicode else [])
    rng = random.Random(seed)
    if histories is not None:  # histories, or requests {history, timestamps, behaviours, now}
        requests = [
            {"k": 10, **h} if isinstance(h, dict) else {"history": h, "k": 10} for h in histories
        ]
    else:
        requests = [_request(rng, ids, vocab, max_len) for _ in range(n)]
        requests.append({"history": ["unknown-a", 123456789], "k": 10})  # popularity fallback
        requests.append({"history": [ids[0]], "k": 3, "exclude": ids[:2]})
    int_ids = isinstance(ids[0], int)
    cold_ids = [10**6 + i if int_ids else f"cold{i}" for i in range(len(texts))]
    cold_requests = [
        {"history": [*rng.sample(ids, 3), cold_ids[0]], "k": 10},
        {"history": rng.sample(ids, 5), "k": 10, "candidates": [*cold_ids, *ids[:5]]},
        {"history": [cold_ids[1], cold_ids[2]], "k": 10},
    ]
    removed = rng.sample(ids, 3)
    return {
        "demo": rng.sample(ids, 4),  # items the demo-page test clicks, in order
        "bundle": str(bundle),
        "requests": requests,
        "batch": {"histories": [r["history"] for r in requests[:12]], "k": 10},
        "cold": {"ids": cold_ids, "texts": texts, "requests": cold_requests},
        "remove": {"ids": removed, "requests": [{"history": rng.sample(ids, 4), "k": 10}]},
    }


def _run(rec, req: dict) -> dict:
    return rec.recommend(
        req["history"],
        k=req.get("k", 10),
        exclude_seen=req.get("exclude_seen", True),
        behaviours=req.get("behaviours"),
        timestamps=req.get("timestamps"),
        now=req.get("now"),
        exclude=req.get("exclude"),
        candidates=req.get("candidates"),
    ).to_dict()


def expect(bundle: Path, cases: dict, cold: bool = True, precision: str | None = None) -> dict:
    from edgerec.runtime import Recommender

    rec = Recommender.load(bundle, providers="cpu", threads=1, precision=precision)
    out: dict = {"precision": rec.precision, "requests": [_run(rec, r) for r in cases["requests"]]}
    batch = cases["batch"]
    out["batch"] = [x.to_dict() for x in rec.recommend_batch(batch["histories"], k=batch["k"])]
    # the demo page: recommend(k=10) after each click, no other option
    demo = cases.get("demo", [])
    out["demo"] = [rec.recommend(demo[:n], k=10).to_dict() for n in range(len(demo) + 1)]
    if cold and rec._text is not None:  # a text encoder was loaded
        c = cases["cold"]
        vectors = rec._encode_texts(list(c["texts"]))
        tokens = rec._tokenizer(list(c["texts"]))
        out["cold"] = {
            "vectors": vectors.tolist(),
            "tokens": [
                [int(t) for t, m in zip(row, mask, strict=True) if m]
                for row, mask in zip(tokens["input_ids"], tokens["attention_mask"], strict=True)
            ],
        }
        rec.add_items(c["ids"], c["texts"], titles=[f"cold {x}" for x in c["ids"]])
        out["cold"]["vectors_stored"] = rec._state.catalog.float_matrix[-len(c["ids"]) :].tolist()
        out["cold"]["requests"] = [_run(rec, r) for r in c["requests"]]
    r = cases["remove"]
    out["remove"] = {
        "removed": rec.remove_items(r["ids"]),
        "requests": [_run(rec, q) for q in r["requests"]],
    }
    return out


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


# bad bundles: name -> what to do to a copy of a good one (rehash: checksums updated after)
CORRUPTIONS = {
    "sha256": lambda b: _flip_byte(b / "items.npy"),
    "size": lambda b: (b / "popularity.npy").write_bytes(
        (b / "popularity.npy").read_bytes() + b"\0"
    ),
    "missing": lambda b: (b / "items.json").unlink(),
    "version1": lambda b: _edit_json(b / "manifest.json", lambda m: m.update(format_version=1)),
    "version3": lambda b: _edit_json(b / "manifest.json", lambda m: m.update(format_version=3)),
    "format": lambda b: _edit_json(b / "manifest.json", lambda m: m.update(format="other")),
    "dims": lambda b: _edit_json(b / "manifest.json", lambda m: m["dims"].update(dim=0)),
    "dims-type": lambda b: _edit_json(b / "manifest.json", lambda m: m["dims"].update(window="3")),
    "name": lambda b: _edit_json(b / "manifest.json", lambda m: m.update(item_ids="../items.json")),
    "unlisted": lambda b: _edit_json(
        b / "manifest.json", lambda m: m["files"].pop("popularity.npy")
    ),
    "precision": lambda b: _edit_json(
        b / "manifest.json", lambda m: m["graphs"]["recommend"].update(fp64="x.onnx")
    ),
    "vocab": lambda b: _edit_json(b / "manifest.json", lambda m: m.update(default_behaviour="9")),
    "sha-format": lambda b: _edit_json(
        b / "manifest.json", lambda m: m["files"]["items.npy"].update(sha256="XYZ")
    ),
}
REHASHED = {
    "npy-shape": lambda b: np.save(b / "items.npy", np.zeros((3, 8), np.float32)),
    "npy-dtype": lambda b: np.save(b / "items.npy", np.zeros((61, 8), np.float64)),
    "npy-nan": lambda b: np.save(b / "items.npy", np.full((61, 8), np.nan, np.float32)),
    "npy-object": lambda b: (b / "items.npy").write_bytes(
        _npy_header("|O", (61, 8)) + bytes(61 * 8 * 8)
    ),
    "ids-dup": lambda b: _edit_json(
        b / "items.json", lambda o: o["ids"].__setitem__(1, o["ids"][0])
    ),
    "ids-count": lambda b: _edit_json(b / "items.json", lambda o: o["ids"].pop()),
    "pop-shape": lambda b: np.save(b / "popularity.npy", np.zeros(5, np.float32)),
    "graph-swap": lambda b: (b / "recommend.onnx").write_bytes((b / "topk.onnx").read_bytes()),
}


def _npy_header(descr: str, shape: tuple) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def bad_bundles(good: Path, out: Path) -> dict:
    """Copies of ``good`` with one thing wrong each, and the message of the Python
    runtime's ``BundleError`` for each (the JS runtime must say the same)."""
    import shutil

    from edgerec.errors import BundleError
    from edgerec.runtime import Recommender

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from runtime_helpers import rehash

    messages = {}
    for name, corrupt in {**CORRUPTIONS, **REHASHED}.items():
        bad = out / name
        shutil.copytree(good, bad)
        corrupt(bad)
        if name in REHASHED:
            rehash(bad)
        try:
            Recommender.load(bad, providers="cpu")
            messages[name] = None
        except BundleError as e:
            messages[name] = str(e)
    run = out / "training-run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    for name, path in (("training-run", run), ("not-a-directory", good / "items.json")):
        try:
            Recommender.load(path, providers="cpu")
        except BundleError as e:
            messages[name] = str(e)
    return {name: {"path": str(out / name), "message": m} for name, m in messages.items()}


def fixtures(out: Path, real: bool | Path = False) -> None:
    """Tiny bundles made at test time (tests/runtime_helpers.make_bundle: seconds; with
    ``real``, also the export pipeline's tiny bundle with the MiniLM tokenizer and int8
    text encoder: a minute; or that bundle's path when it was made already), their cases
    and the Python runtime's answers, and bad bundles with the Python runtime's messages:
    what the node tests read (index.json names the bundles)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from runtime_helpers import make_bundle

    out.mkdir(parents=True, exist_ok=True)
    index = {}

    def add(name: str, bundle: Path, unicode: bool) -> None:
        cases = make_cases(bundle, 60, seed=len(index), unicode=unicode)
        (out / f"{name}.cases.json").write_text(json.dumps(cases))
        (out / f"{name}.expected.json").write_text(json.dumps(expect(bundle, cases)))
        index[name] = str(bundle)

    for name, kwargs in {
        "float32-int": {},
        "int8-str": {"item_dtype": "int8", "id_type": "str", "seed": 1},
        "float16-int": {"item_dtype": "float16", "seed": 2, "text": True},
    }.items():
        add(name, make_bundle(out / name, n_items=60, dim=8, max_len=10, **kwargs), False)
    # the same bundle with ORT-format graphs (edgerec convert-ort): JS loads those, Python
    # keeps running the .onnx ones
    import shutil

    from edgerec.commands.ort import convert

    shutil.copytree(index["float32-int"], out / "float32-int-ort")
    convert(out / "float32-int-ort")
    add("float32-int-ort", out / "float32-int-ort", False)
    bad = bad_bundles(Path(index["float32-int"]), out / "bad")
    bad["training-run"]["path"] = str(out / "bad" / "training-run")
    bad["not-a-directory"]["path"] = str(Path(index["float32-int"]) / "items.json")
    (out / "bad.json").write_text(json.dumps(bad, indent=1))
    if real is True:
        from export_fixtures import make_tiny_bundle

        make_tiny_bundle(out / "real-tiny", precisions=("fp32", "int8"))
        real = out / "real-tiny"
    if real:
        add("real-tiny", Path(real), True)
    (out / "index.json").write_text(json.dumps(index, indent=1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("out", type=Path)
    f.add_argument("--real", action="store_true", help="also the tiny real export (a minute)")
    c = sub.add_parser("cases")
    c.add_argument("bundle", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--n", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--histories", type=Path, help="JSON list of histories to use as the requests")
    e = sub.add_parser("expect")
    e.add_argument("bundle", type=Path)
    e.add_argument("cases", type=Path)
    e.add_argument("out", type=Path)
    a = p.parse_args(argv)
    np.seterr(all="ignore")
    if a.cmd == "fixtures":
        fixtures(a.out, a.real)
    elif a.cmd == "cases":
        hist = json.loads(a.histories.read_text()) if a.histories else None
        a.out.write_text(json.dumps(make_cases(a.bundle, a.n, a.seed, hist)))
    else:
        a.out.write_text(json.dumps(expect(a.bundle, json.loads(a.cases.read_text()))))


if __name__ == "__main__":
    main()
