"""The item cold-start protocol: the split, the baselines, and ``edgerec bench cold-start``.

Small hand-made data sets pin the rules (which items are cold, which events go where);
the end-to-end test trains two tiny models with the real trainer, exports them and adds
the cold items through the runtime, with a tiny random-weight BERT (MiniLM's tokenizer)
so the export takes seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from export_fixtures import tiny_text_encoder

from edgerec.data.build import build_dataset, make_catalog
from edgerec.data.schema import LoadReport
from edgerec.data.split import leave_one_out
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic
from edgerec.evaluation import cold_start as C


def hand_dataset(events: list[tuple[int, int, int]], n_items: int, texts: list[str] | None = None):
    """(user, item id, timestamp) events over items 1..n_items."""
    users, items, times = (np.array(x) for x in zip(*events, strict=True))
    titles = texts or [f"item {i}" for i in range(1, n_items + 1)]
    catalog = make_catalog(np.arange(1, n_items + 1), titles, np.zeros((n_items, 1), bool), ("g",))
    return build_dataset(
        "hand",
        users=users,
        items=items,
        timestamps=times,
        behaviours=np.full(len(users), "4"),
        lines=np.arange(1, len(users) + 1),
        source="hand",
        catalog=catalog,
        report=LoadReport(),
    )


@pytest.fixture(scope="module")
def synth():
    return generate_synthetic(SyntheticConfig(n_users=150, n_items=80, n_categories=4, seed=3))


def test_recent_choice_takes_the_items_introduced_last():
    # item 1..10; item i first appears at time 100*i, except item 3 which appears last
    events = []
    for u in range(6):
        for i in range(1, 11):
            t = 100 * i + u if i != 3 else 5000 + u
            events.append((u, i, t))
    ds = hand_dataset(events, 10)
    cold = C.choose_cold_items(ds, 0.2, "recent")
    ids = ds.catalog.item_ids[cold - 1].tolist()
    assert sorted(ids) == [3, 10]
    cold = C.choose_cold_items(ds, 0.3, "recent")
    assert sorted(ds.catalog.item_ids[cold - 1].tolist()) == [3, 9, 10]


def test_random_choice_is_a_seeded_draw_of_the_right_size(synth):
    a = C.choose_cold_items(synth, 0.1, "random", seed=0)
    b = C.choose_cold_items(synth, 0.1, "random", seed=0)
    c = C.choose_cold_items(synth, 0.1, "random", seed=1)
    recent = C.choose_cold_items(synth, 0.1, "recent")
    assert len(a) == len(recent) == 8 == round(0.1 * synth.n_items)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert a.tolist() != recent.tolist()
    assert np.all(np.diff(a) > 0) and a.min() >= 1 and a.max() <= synth.n_items


def test_split_removes_every_cold_interaction_from_training_and_validation(synth):
    css = C.cold_start_split(synth, 0.15, "random", seed=2)
    cold_ids = set(synth.catalog.item_ids[css.cold_items - 1].tolist())
    train = css.train_data
    assert not cold_ids & set(train.catalog.item_ids.tolist())
    assert train.n_items == synth.n_items - len(cold_ids)
    # every event the trainer sees (train, validation and its test) is on a warm item
    train_ids = train.catalog.item_ids[train.interactions.items - 1]
    assert not cold_ids & set(train_ids.tolist())
    # and no warm event was lost: cold events are all that left (no user fell below 3)
    full_ids = synth.catalog.item_ids[synth.interactions.items - 1]
    assert len(train_ids) == int((~np.isin(full_ids, list(cold_ids))).sum())
    assert css.warm_items.tolist() == [
        synth.catalog.item_ids.tolist().index(i) + 1 for i in train.catalog.item_ids.tolist()
    ]
    # the training data keeps its texts, so item i of it is warm_items[i-1] of the full set
    for i in (0, len(css.warm_items) - 1):
        assert train.catalog.texts[i] == synth.catalog.texts[css.warm_items[i] - 1]
    s = css.summary()
    assert s["cold_interactions_removed"] == len(full_ids) - len(train_ids)
    assert s["cold_test_events"] + s["warm_test_events"] == synth.n_users


def test_users_left_with_too_few_events_leave_the_training_data():
    # user 0 has 4 events, 2 of them on item 5 (made cold as the last introduced)
    events = [(0, 1, 1), (0, 5, 90), (0, 2, 3), (0, 5, 95)]
    events += [(u, i, 10 * i + u) for u in (1, 2, 3) for i in (1, 2, 3, 4)]
    ds = hand_dataset(events, 5)
    css = C.cold_start_split(ds, 0.2, "recent")
    assert ds.catalog.item_ids[css.cold_items - 1].tolist() == [5]
    assert css.train_data.n_users == 3
    assert 0 not in css.train_data.user_ids.tolist()


def test_cold_test_events_are_exactly_those_whose_target_is_cold(synth):
    css = C.cold_start_split(synth, 0.1, "random", seed=0)
    targets = css.split.targets("test")
    cold, warm = css.test_users("cold"), css.test_users("warm")
    assert len(cold) > 0
    assert set(cold.tolist()) == {u for u in range(synth.n_users) if targets[u] in css.cold_items}
    assert set(warm.tolist()) == set(range(synth.n_users)) - set(cold.tolist())
    with pytest.raises(ValueError, match="group"):
        css.test_users("lukewarm")


def test_baselines_shapes_popularity_and_random(synth):
    css = C.cold_start_split(synth, 0.1, "recent")
    users = np.arange(7)
    pop = C.popularity_scorer(css)(users, "test")
    assert pop.shape == (7, synth.n_items + 1)
    assert np.all(pop[:, css.cold_items] == 0)
    warm_cols = np.setdiff1d(np.arange(1, synth.n_items + 1), css.cold_items)
    assert pop[0, warm_cols].max() > 0
    rnd = C.random_scorer(css)
    assert rnd(users, "test").shape == (7, synth.n_items + 1)
    # all items tied: NDCG@10 is the exact expectation of a random order over the
    # items a user has not seen
    result = C.evaluate_groups(rnd, css)
    warm = css.test_users("warm")
    rows, items = css.split.history_matrix_rows("test", warm)
    targets = css.split.targets("test")[warm]
    # the protocol masks a user's earlier items except the target (repeat consumption)
    unseen = synth.n_items - np.array(
        [len(set(items[rows == r].tolist()) - {targets[r]}) for r in range(len(warm))]
    )
    gain = sum(1.0 / math.log2(r + 1) for r in range(1, 11))
    assert result["warm"]["ndcg@10"] == pytest.approx(float(np.mean(gain / unseen)), rel=1e-9)
    assert result["warm"]["events"] == len(css.test_users("warm"))
    # popularity never reaches a cold target
    assert C.evaluate_groups(C.popularity_scorer(css), css)["cold"]["hr@10"] == 0.0


def test_content_knn_ranks_a_matching_cold_item_above_unrelated_ones():
    # user 0's recent items are about space; item 6 (cold) is too, items 7-8 (cold) are not
    texts = [
        "Star Voyage. Genres: Sci-Fi, Space.",
        "Galaxy Patrol. Genres: Sci-Fi, Space.",
        "Moon Base. Genres: Sci-Fi, Space.",
        "Kitchen Stories. Genres: Cooking.",
        "Garden Life. Genres: Gardening.",
        "Planet Raiders. Genres: Sci-Fi, Space.",
        "Baking Bread. Genres: Cooking.",
        "Roses in June. Genres: Gardening.",
    ]
    events = [(0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 4)]
    events += [(u, i, 10 + i + u) for u in (1, 2, 3) for i in range(1, 9)]
    ds = hand_dataset(events, 8, texts)
    split = leave_one_out(ds)
    # made-up text vectors: a space axis and a household axis
    space, home = np.array([1.0, 0.0, 0.1]), np.array([0.0, 1.0, 0.1])
    vectors = np.array([space, space, space, home, home, space * 0.9, home, home * 1.1])
    scores = C.content_knn_scorer(split, vectors, recent=2)(np.array([0]), "test")
    assert scores.shape == (1, 9)
    assert scores[0, 6] > scores[0, 7] and scores[0, 6] > scores[0, 8]
    with pytest.raises(ValueError, match="one row per item"):
        C.content_knn_scorer(split, vectors[:5])
    with pytest.raises(ValueError, match="recent"):
        C.content_knn_scorer(split, vectors, recent=0)


def test_content_knn_on_real_text_vectors_matches_by_meaning(tmp_path):
    """The same with the bundled MiniLM's vectors of the texts (what the benchmark uses)."""
    from edgerec.benchmark.cold_start import text_vectors

    texts = [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "The Lion King (1994). Genres: Animation, Children's, Musical.",
        "Aladdin (1992). Genres: Animation, Children's, Comedy, Musical.",
        "Schindler's List (1993). Genres: Drama, War.",
        "Saving Private Ryan (1998). Genres: Action, Drama, War.",
    ]
    events = [(0, 1, 1), (0, 2, 2), (0, 4, 3)]
    events += [(u, i, 10 + i + u) for u in (1, 2) for i in range(1, 6)]
    ds = hand_dataset(events, 5, texts)
    split = leave_one_out(ds)
    vectors = text_vectors(ds, None)
    assert vectors.shape == (5, 384)
    # the history before the test event: Toy Story, The Lion King
    scores = C.content_knn_scorer(split, vectors, recent=2)(np.array([0]), "valid")
    assert scores[0, 3] > scores[0, 5]  # Aladdin above Saving Private Ryan


def test_paired_difference():
    d = C.paired_difference(np.array([1.0, 0.5, 0.0, 0.5]), np.array([0.5, 0.5, 0.0, 0.0]))
    assert d["mean"] == pytest.approx(0.25) and d["events"] == 4
    assert d["se"] == pytest.approx(np.std([0.5, 0, 0, 0.5], ddof=1) / 2)
    with pytest.raises(ValueError, match="equal"):
        C.paired_difference(np.ones(3), np.ones(4))


def test_bad_fractions_and_choices_are_refused(synth):
    for bad in (0, 1, 1.5, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="fraction"):
            C.cold_start_split(synth, bad)
    with pytest.raises(ValueError, match="recent, random"):
        C.cold_start_split(synth, 0.1, "newest")
    with pytest.raises(ValueError, match="leaving none to train on"):
        C.cold_start_split(synth, 0.999)


# --------------------------------------------------------------------------- the command


def _cli(args, capsys):
    from edgerec.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY = [
    "--synthetic-users",
    "60",
    "--synthetic-items",
    "40",
    "--epochs",
    "1",
    "--threads",
    "1",
    "--set",
    "model.dim=16",
    "--set",
    "model.hidden=16",
    "--set",
    "model.max_len=20",
    "--set",
    "train.warmup_steps=5",
    "--set",
    "train.batch_size=64",
    "--no-distill",
    "--precision",
    "fp32",
    "--cold-choice",
    "random",
    "--cold-items",
    "0.2",
]


def test_cli_end_to_end_on_a_tiny_world(tmp_path, capsys):
    from edgerec.runtime import Recommender

    encoder = tiny_text_encoder(tmp_path / "tiny-bert")
    out = tmp_path / "cs"
    code, stdout, stderr = _cli(
        ["bench", "cold-start", "--out", str(out), "--text-encoder", str(encoder), *TINY], capsys
    )
    assert code == 0, stderr
    assert "wrote" in stdout and "teacher" in stdout
    result = json.loads((out / "cold_start.json").read_text())
    split = result["split"]
    assert split["cold_items"] == 8 and split["choice"] == "random"
    assert split["cold_test_events"] + split["warm_test_events"] == 60
    rows = {(r["model"], r["precision"]): r for r in result["rows"]}
    assert set(rows) == {
        ("teacher", "fp32"),
        ("teacher-no-cold", "fp32"),
        ("full-data", "fp32"),
        ("content-knn", None),
        ("popularity", None),
        ("random", None),
    }
    teacher = rows[("teacher", "fp32")]
    assert teacher["added_items"] == 8 and "added_items" not in rows[("full-data", "fp32")]
    assert teacher["warm_vs_full_data"]["events"] == 48
    # without the cold items in the catalog none can take a top-10 place
    assert rows[("teacher-no-cold", "fp32")]["warm"]["cold_share@10"] == 0.0
    assert rows[("popularity", None)]["warm"]["cold_share@10"] == 0.0
    assert 0.0 <= teacher["warm"]["cold_share@10"] <= 1.0
    assert teacher["warm_vs_full_data"]["mean"] == pytest.approx(
        teacher["warm"]["ndcg@10"] - rows[("full-data", "fp32")]["warm"]["ndcg@10"]
    )
    for row in rows.values():
        assert row["warm"]["events"] == split["warm_test_events"]
        assert 0.0 <= row["warm"]["ndcg@10"] <= row["warm"]["hr@10"] <= 1.0
        assert row["cold"]["events"] == split["cold_test_events"] == 12
    # the teacher's bundle never held the cold items; the full-data bundle did
    cold_ids = set(result["cold_items"])
    assert not cold_ids & set(Recommender.load(out / "bundles" / "teacher").item_ids)
    assert cold_ids <= set(Recommender.load(out / "bundles" / "full").item_ids)
    assert result["runs"]["cold"]["epochs_run"] == 1
    assert result["settings"]["train"]["seed"] == 0

    # a second call reuses the runs and bundles; a --full-run of other settings is refused
    code, _, stderr = _cli(
        [
            "bench",
            "cold-start",
            "--out",
            str(tmp_path / "cs2"),
            "--text-encoder",
            str(encoder),
            "--full-run",
            str(out / "full-run"),
            *TINY,
            "--set",
            "model.dropout=0.3",
        ],
        capsys,
    )
    assert code == 2 and "other settings than asked" in stderr and "model.dropout" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cold-items", "0"], "between 0 and 1"),
        (["--cold-items", "1.5"], "between 0 and 1"),
        (["--cold-items", "nan"], "between 0 and 1"),
        (["--cold-choice", "newest"], "recent, random"),
        (["--set", "model.bogus=1"], "has no setting 'bogus'"),
        (["--set", "lr=1"], "expected model.NAME=VALUE"),
        (["--precision", "fp16"], "--precision"),
        (["--recent", "0"], "--recent"),
        (["--threads", "0"], "--threads"),
        (["--set", "train.text_encoder=random"], "pretrained text encoder"),
    ],
)
def test_cli_bad_arguments_give_clear_errors(args, message, tmp_path, capsys):
    code, _, stderr = _cli(["bench", "cold-start", "--out", str(tmp_path / "x"), *args], capsys)
    assert code == 2 and message in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "x" / "full-run").exists()
