"""The leave-one-out split on hand-made data, and the synthetic generator."""

import numpy as np

from edgerec.data import SyntheticConfig, generate_synthetic, leave_one_out, load_dataset


def _ml100k_dir(tmp_path, rows: str, n_items: int = 5):
    root = tmp_path / "ml-100k"
    root.mkdir()
    (root / "u.genre").write_text("unknown|0\nDrama|1\n\n")
    (root / "u.item").write_bytes(
        "".join(
            f"{i}|Film {i} (1990)|01-Jan-1990||http://x|0|1\n" for i in range(1, n_items + 1)
        ).encode("latin-1")
    )
    (root / "u.data").write_text(rows)
    return root


def test_split_sorts_stably_so_tied_timestamps_keep_file_order(tmp_path):
    # user 1: items 3 and 1 share timestamp 20 (file order 3 then 1); 5 is latest
    rows = "1\t2\t4\t10\n1\t3\t4\t20\n1\t5\t4\t30\n1\t1\t4\t20\n"
    ds = load_dataset("movielens-100k", _ml100k_dir(tmp_path, rows))
    split = leave_one_out(ds)
    seq = split.sequences
    assert seq.items.tolist() == [2, 3, 1, 5]
    assert split.targets("test").tolist() == [5]
    assert split.targets("valid").tolist() == [1]
    assert split.train_events().tolist() == [True, True, False, False]


def test_split_histories_exclude_the_target_and_everything_after(tmp_path):
    rows = "".join(f"{u}\t{i}\t3\t{t}\n" for u in (1, 2) for t, i in enumerate([4, 2, 1, 3]))
    split = leave_one_out(load_dataset("movielens-100k", _ml100k_dir(tmp_path, rows)))
    rows_, items = split.history_matrix_rows("valid", np.array([0, 1]))
    assert items[rows_ == 0].tolist() == [4, 2]
    rows_, items = split.history_matrix_rows("test", np.array([1]))
    assert items.tolist() == [4, 2, 1]


def test_users_with_fewer_than_three_events_are_dropped_and_reported(tmp_path):
    rows = "1\t1\t3\t1\n1\t2\t3\t2\n2\t1\t3\t1\n2\t2\t3\t2\n2\t3\t3\t3\n"
    ds = load_dataset("movielens-100k", _ml100k_dir(tmp_path, rows))
    assert ds.n_users == 1 and ds.user_ids.tolist() == [2]
    assert any("fewer than 3" in issue for issue in ds.report.issues)


def test_synthetic_is_deterministic_in_its_seed():
    cfg = SyntheticConfig(n_users=50, n_items=60, seed=3)
    a, b = generate_synthetic(cfg), generate_synthetic(cfg)
    assert np.array_equal(a.interactions.items, b.interactions.items)
    assert a.catalog.texts == b.catalog.texts
    c = generate_synthetic(SyntheticConfig(n_users=50, n_items=60, seed=4))
    assert not np.array_equal(a.interactions.items[:200], c.interactions.items[:200])


def test_synthetic_sessions_follow_their_intent_and_users_their_favourites():
    ds = generate_synthetic(SyntheticConfig(n_users=200, n_items=240, seed=1))
    truth = ds.ground_truth
    cat = truth["item_category"][ds.interactions.items - 1]
    follows_intent = (cat == truth["event_intent"]).mean()
    assert 0.7 < follows_intent < 0.95
    favourite = truth["long_term"][ds.interactions.users, cat] > 0
    # events off the session intent come from the user's long-term favourites
    off_intent = cat != truth["event_intent"]
    assert favourite[off_intent].mean() > 0.9
    assert (truth["event_session_pos"] == 0).sum() > ds.n_users * 3
