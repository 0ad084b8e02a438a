"""A synthetic data set whose latent long- and short-term interests are known.

Each user keeps a persistent preference over a few categories (the long-term horizon)
and browses in sessions, each with an intent category that dominates its consecutive
events (the short-term horizon). The next item depends on both, so a model that reads
only one horizon must do worse than one that fuses them, and the generator's ground
truth lets tests check which horizon the learned gate trusts when.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgerec.data.build import build_dataset, make_catalog
from edgerec.data.schema import Dataset, LoadReport

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "ven",
    "tor",
    "sel",
    "qui",
    "dan",
    "mor",
    "pex",
    "zul",
    "bri",
    "cha",
    "fen",
    "gor",
    "hal",
    "jin",
    "kra",
    "lum",
    "nox",
    "pra",
    "ris",
    "sto",
]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1200
    n_items: int = 600
    n_categories: int = 12
    words_per_category: int = 14
    min_events: int = 30
    max_events: int = 70
    min_session: int = 4
    max_session: int = 12
    favourites: int = 2  # long-term categories per user
    p_intent_from_favourites: float = 0.35  # a session's intent is often NOT a favourite
    p_follow_intent: float = 0.75  # in-session events drawn from the intent category
    # popularity within a category ~ 1 / rank**popularity_exponent: larger values make a
    # longer tail of rarely seen items (1.2 with 10k items: most items seen a few times)
    popularity_exponent: float = 0.8
    seed: int = 0


def _words(rng: np.random.Generator, n: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def generate_synthetic(config: SyntheticConfig | None = None) -> Dataset:
    """Deterministic in ``config.seed``; ground truth in ``dataset.ground_truth``."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    C = cfg.n_categories
    category_names = tuple(f"genre{c:02d}" for c in range(C))
    vocab = np.array(_words(rng, C * cfg.words_per_category), dtype=object).reshape(C, -1)
    primary = np.arange(cfg.n_items) % C
    rng.shuffle(primary)
    cats = np.zeros((cfg.n_items, C), dtype=bool)
    cats[np.arange(cfg.n_items), primary] = True
    second = rng.random(cfg.n_items) < 0.25
    cats[np.flatnonzero(second), rng.integers(0, C, second.sum())] = True
    titles = []
    for i in range(cfg.n_items):
        words = rng.choice(vocab[primary[i]], size=rng.integers(2, 4), replace=False)
        titles.append(" ".join(w.capitalize() for w in words) + f" {i}")
    by_cat = [np.flatnonzero(primary == c) for c in range(C)]
    a = cfg.popularity_exponent
    pop = [1.0 / np.arange(1, len(ix) + 1) ** a for ix in by_cat]  # Zipf within category
    pop = [p / p.sum() for p in pop]

    users, items, times, ratings = [], [], [], []
    intent_of_event, session_pos, fav_weights = [], [], np.zeros((cfg.n_users, C))
    for u in range(cfg.n_users):
        favs = rng.choice(C, size=cfg.favourites, replace=False)
        w = rng.dirichlet(np.ones(cfg.favourites) * 2.0)
        fav_weights[u, favs] = w
        n = int(rng.integers(cfg.min_events, cfg.max_events + 1))
        t = int(rng.integers(0, 86400 * 30))
        k = 0
        while k < n:
            length = int(rng.integers(cfg.min_session, cfg.max_session + 1))
            if rng.random() < cfg.p_intent_from_favourites:
                intent = int(rng.choice(favs, p=w))
            else:
                intent = int(rng.integers(0, C))
            for pos in range(min(length, n - k)):
                if rng.random() < cfg.p_follow_intent:
                    c = intent
                else:
                    c = int(rng.choice(favs, p=w))
                item = int(rng.choice(by_cat[c], p=pop[c]))
                liked = c in favs or c == intent
                users.append(u)
                items.append(item + 1)
                times.append(t)
                ratings.append(int(np.clip(rng.normal(4.2 if liked else 2.5, 0.7), 1, 5).round()))
                intent_of_event.append(intent)
                session_pos.append(pos)
                t += int(rng.integers(30, 600))
                k += 1
            t += int(rng.integers(86400, 86400 * 5))
    report = LoadReport()
    catalog = make_catalog(np.arange(1, cfg.n_items + 1), titles, cats, category_names)
    ds = build_dataset(
        f"synthetic-{cfg.seed}",
        users=np.asarray(users),
        items=np.asarray(items),
        timestamps=np.asarray(times),
        behaviours=np.asarray(ratings).astype(str),
        lines=np.arange(1, len(users) + 1),
        source="synthetic",
        catalog=catalog,
        report=report,
    )
    truth = {
        "config": asdict(cfg),
        "long_term": fav_weights,  # (n_users, n_categories) preference weights
        "event_intent": np.asarray(intent_of_event),  # per event, in file order
        "event_session_pos": np.asarray(session_pos),  # 0 = first event of a session
        "item_category": primary,  # primary category of item index i+1
    }
    object.__setattr__(ds, "ground_truth", truth)
    return ds
