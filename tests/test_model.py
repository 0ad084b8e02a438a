"""The model and its training samples: shapes, masking, no leakage, losses."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgerec.data.split import leave_one_out  # noqa: E402
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic  # noqa: E402
from edgerec.training import losses as L  # noqa: E402
from edgerec.training.config import ModelConfig  # noqa: E402
from edgerec.training.model import InterestModel  # noqa: E402
from edgerec.training.samples import BatchBuilder, epoch_order, training_samples  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: extra threads only add synchronisation (and fight other jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    ds = generate_synthetic(SyntheticConfig(n_users=30, n_items=40, seed=3))
    return ds, leave_one_out(ds)


def make_model(**kw) -> InterestModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_items=40, n_behaviours=6, n_categories=12, text_dim=8, dim=16, hidden=12, **kw
    )
    model = InterestModel(cfg)
    with torch.no_grad():
        model.items.text_embeddings[1:] = torch.randn(40, 8)
    return model.eval()


def random_inputs(B=5, L=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    pos = torch.arange(L).unsqueeze(0)
    valid = pos < lengths.unsqueeze(1)
    items = torch.randint(1, 41, (B, L), generator=g) * valid
    beh = torch.randint(1, 6, (B, L), generator=g) * valid
    gaps = torch.randint(1, 30, (B, L), generator=g) * valid
    return items, beh, gaps, lengths


def test_encoding_shapes_and_ranges():
    model = make_model()
    items, beh, gaps, lengths = random_inputs()
    enc = model.encode_users(items, beh, gaps, lengths)
    assert enc.user.shape == enc.long.shape == enc.short.shape == (5, 16)
    assert enc.gate.shape == (5,)
    assert bool(((enc.gate >= 0) & (enc.gate <= 1)).all())
    assert enc.attention.shape == (5, 9)
    torch.testing.assert_close(enc.attention.sum(1), torch.ones(5))
    pad = torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)
    assert float(enc.attention.detach()[pad].abs().sum()) == 0.0
    assert model.score_all(enc.user).shape == (5, 41)


def test_padding_never_changes_a_user_vector():
    model = make_model()
    items, beh, gaps, lengths = random_inputs()
    base = model.encode_users(items, beh, gaps, lengths)
    extra = 7
    padded = [
        torch.cat([x, torch.zeros(5, extra, dtype=x.dtype)], dim=1) for x in (items, beh, gaps)
    ]
    more = model.encode_users(*padded, lengths)
    torch.testing.assert_close(more.user, base.user, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(more.gate, base.gate, rtol=1e-5, atol=1e-6)
    # junk behaviour/gap ids beyond a row's length must not matter either
    junk = [p.clone() for p in padded]
    tail = torch.arange(9 + extra).unsqueeze(0) >= lengths.unsqueeze(1)
    junk[1][tail] = 3
    junk[2][tail] = 17
    noisy = model.encode_users(*junk, lengths)
    torch.testing.assert_close(noisy.user, base.user, rtol=1e-5, atol=1e-6)


def test_each_row_is_independent_of_the_others_in_its_batch():
    model = make_model()
    items, beh, gaps, lengths = random_inputs()
    full = model.encode_users(items, beh, gaps, lengths).user
    k = int(lengths[2])
    alone = model.encode_users(items[2:3, :k], beh[2:3, :k], gaps[2:3, :k], lengths[2:3]).user
    torch.testing.assert_close(alone[0], full[2], rtol=1e-5, atol=1e-6)


def test_ablations_pin_the_gate():
    items, beh, gaps, lengths = random_inputs()
    no_long = make_model(ablate=("long",)).encode_users(items, beh, gaps, lengths)
    no_short = make_model(ablate=("short",)).encode_users(items, beh, gaps, lengths)
    assert torch.all(no_long.gate == 0)
    assert torch.all(no_short.gate == 1)
    temp = torch.exp(-make_model().log_temperature)
    torch.testing.assert_close(no_long.user, no_long.short * temp)
    torch.testing.assert_close(no_short.user, no_short.long * temp)


def test_window_short_term_reads_only_the_last_w_events():
    model = make_model(short_term="window", gate="scalar", window=3)
    items, beh, gaps, lengths = random_inputs(B=4, L=9)
    lengths[:] = 9
    items[items == 0] = 1
    base = model.encode_users(items, beh, gaps, lengths)
    older = items.clone()
    older[:, :6] = torch.randint(1, 41, (4, 6), generator=torch.Generator().manual_seed(9))
    changed = model.encode_users(older, beh, gaps, lengths)
    torch.testing.assert_close(changed.short, base.short)
    assert not torch.allclose(changed.long, base.long)
    recent = items.clone()
    recent[:, -1] = recent[:, -1] % 40 + 1
    assert not torch.allclose(model.encode_users(recent, beh, gaps, lengths).short, base.short)


def test_scalar_gate_is_one_weight_per_user():
    model = make_model(gate="scalar")
    enc = model.encode_users(*random_inputs())
    temp = torch.exp(-model.log_temperature)
    g = enc.gate.unsqueeze(1)
    torch.testing.assert_close(enc.user, (g * enc.long + (1 - g) * enc.short) * temp)


def test_horizon_dropout_fuses_one_horizon_alone_in_training_only():
    """A share of training samples gets gate 1 (long alone) or 0 (short alone); in eval
    mode the option changes nothing, so exported graphs and the runtime never see it."""
    model = make_model(gate="scalar", horizon_dropout=0.6, dropout=0.0)
    inputs = random_inputs(B=400, L=6)
    torch.manual_seed(1)
    model.train()
    gate = model.encode_users(*inputs).gate.detach()
    ones, zeros = int((gate == 1.0).sum()), int((gate == 0.0).sum())
    assert 80 < ones < 160 and 80 < zeros < 160  # ~0.3 each of 400
    model.eval()
    plain = make_model(gate="scalar", dropout=0.0)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.encode_users(*inputs).user, plain.encode_users(*inputs).user)


def test_request_time_feeds_the_request_time_gap_to_the_gate():
    model = make_model(request_time=True).eval()
    items, behaviours, gaps, lengths = random_inputs()
    request = torch.tensor([3, 20, 0, 25, 9])
    seen = {}
    hook = model.user.gate[0].register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        a = model.encode_users(items, behaviours, gaps, lengths, request_gaps=request)
        d = model.cfg.dim
        torch.testing.assert_close(seen["x"][:, 2 * d :], model.user.gap_emb(request))
        unknown = model.encode_users(items, behaviours, gaps, lengths)
    hook.remove()
    assert (a.gate - unknown.gate).abs()[[0, 1, 3, 4]].min() > 0  # the time moves the gate
    torch.testing.assert_close(a.gate[2], unknown.gate[2])  # bucket 0 is "unknown"


def test_training_batches_carry_the_gap_from_the_last_event_to_the_target(tiny):
    from edgerec.features import request_gap_buckets

    ds, split = tiny
    s = training_samples(split)
    batch = BatchBuilder(ds, split, s, max_len=10)(np.arange(0, len(s), 7))
    ts = split.sequences.timestamps
    ends = s.end[np.arange(0, len(s), 7)]
    np.testing.assert_array_equal(batch.request_gaps, request_gap_buckets(ts[ends - 1], ts[ends]))
    assert (batch.request_gaps >= 2).all()


def test_configs_written_before_the_gate_options_load_as_before():
    old = ModelConfig().to_dict()
    for option in ("gate", "short_term", "long_term", "request_time", "horizon_dropout"):
        del old[option]
    cfg = ModelConfig.from_dict(old)
    assert (cfg.gate, cfg.short_term, cfg.long_term) == ("vector", "bidirectional", "all")
    assert (cfg.request_time, cfg.horizon_dropout) == (False, 0.0)


def test_text_ablation_ignores_text_and_id_ablation_ignores_ids():
    model = make_model(ablate=("text",))
    before = model.items().clone()
    with torch.no_grad():
        model.items.text_embeddings.normal_()
    torch.testing.assert_close(model.items(), before)
    model = make_model(ablate=("id",))
    before = model.items().clone()
    with torch.no_grad():
        model.items.id_emb.weight.normal_()
    torch.testing.assert_close(model.items(), before)


def test_samples_are_every_train_prefix_and_never_reach_valid_or_test(tiny):
    _, split = tiny
    seq = split.sequences
    s = training_samples(split)
    train = split.train_events()
    # every training event except each user's first is a target, nothing else is
    expected = int(train.sum()) - seq.n_users
    assert len(s) == expected
    assert bool(train[s.end].all())
    assert bool((s.end > s.start).all())
    assert bool((s.end < split.history_end("valid")[s.user]).all())


def test_the_target_never_leaks_into_its_history(tiny):
    ds, split = tiny
    s = training_samples(split)
    builder = BatchBuilder(ds, split, s, max_len=10)
    index = np.arange(len(s))
    batch = builder(index)
    seq = split.sequences
    # the history is exactly the (at most max_len) events before the target
    for row in range(0, len(s), 37):
        k = batch.lengths[row]
        end = s.end[row]
        np.testing.assert_array_equal(batch.items[row, :k], seq.items[end - k : end])
        assert batch.targets[row] == seq.items[end]
    # scrambling the target and everything after it leaves every history unchanged
    scrambled = seq.items.copy()
    cut = s.end[5]
    scrambled[cut : seq.offsets[s.user[5] + 1]] = 1
    from dataclasses import replace

    split2 = replace(split, sequences=replace(seq, items=scrambled))
    b2 = BatchBuilder(ds, split2, s, max_len=10)(np.array([5]))
    np.testing.assert_array_equal(b2.items[0], batch.items[5, : b2.items.shape[1]])


def test_future_targets_follow_the_target_and_stop_before_valid_and_test(tiny):
    ds, split = tiny
    s = training_samples(split)
    b = BatchBuilder(ds, split, s, max_len=10, future=3)(np.arange(len(s)))
    seq = split.sequences
    train_end = split.history_end("train")[s.user]
    for k in range(3):
        pos = s.end + 1 + k
        inside = pos < train_end
        np.testing.assert_array_equal(b.future_targets[inside, k], seq.items[pos[inside]])
        assert not b.future_targets[~inside, k].any()
    # the sample just before the valid event has no future targets at all
    last = s.end == train_end - 1
    assert last.any() and not b.future_targets[last].any()


def test_user_category_targets_are_distributions(tiny):
    ds, split = tiny
    builder = BatchBuilder(ds, split, training_samples(split), max_len=10)
    np.testing.assert_allclose(builder.user_categories.sum(1), 1.0, rtol=1e-5)
    b = builder(np.arange(8))
    cats = np.asarray(ds.catalog.categories, np.float32)
    np.testing.assert_array_equal(b.target_categories, cats[b.targets - 1])


def test_epoch_order_is_a_function_of_seed_and_epoch_and_shards_disjointly():
    a = np.concatenate(epoch_order(103, 1, 2, batch_size=10))
    b = np.concatenate(epoch_order(103, 1, 2, batch_size=10))
    c = np.concatenate(epoch_order(103, 1, 3, batch_size=10))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a.tolist()) == list(range(103))
    r0 = epoch_order(103, 1, 2, rank=0, world=2, batch_size=10)
    r1 = epoch_order(103, 1, 2, rank=1, world=2, batch_size=10)
    assert len(r0) == len(r1)
    assert not set(np.concatenate(r0)) & set(np.concatenate(r1))


def test_sampled_softmax_masks_accidental_hits_and_corrects_for_popularity():
    torch.manual_seed(0)
    table = torch.randn(21, 8)
    user = torch.randn(6, 8)
    targets = torch.tensor([3, 3, 5, 7, 3, 9])  # repeated targets are accidental hits
    log_pop = torch.log(torch.full((21,), 1 / 20))
    loss = L.sampled_softmax_loss(user, lambda i: table[i], targets, log_pop, 20, 20)
    assert torch.isfinite(loss)
    # with the log-count correction the sampled loss converges to the exact one
    exact = float(L.full_softmax_loss(user, table, targets))
    many = torch.stack(
        [
            L.sampled_softmax_loss(user, lambda i: table[i], targets, log_pop, 20, 2000)
            for _ in range(5)
        ]
    ).mean()
    assert abs(float(many) - exact) < 0.05


@pytest.mark.parametrize(
    "task", ["retrieval", "sampled", "behaviour", "next_category", "user_category"]
)
def test_each_loss_decreases_when_optimised(tiny, task):
    ds, split = tiny
    s = training_samples(split)
    builder = BatchBuilder(ds, split, s, max_len=10)
    b = builder(np.arange(min(len(s), 256)))
    model = make_model()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t = {
        k: torch.from_numpy(np.ascontiguousarray(getattr(b, k)))
        for k in b.__dataclass_fields__
        if isinstance(getattr(b, k), np.ndarray)
    }
    log_pop = torch.log(torch.full((41,), 1 / 40))

    def loss_fn():
        table = model.items()
        enc = model.encode_users(t["items"], t["behaviours"], t["gaps"], t["lengths"], table)
        heads = model.heads(enc.user, enc.long, enc.short, table[t["targets"]])
        if task == "retrieval":
            return L.full_softmax_loss(enc.user, table, t["targets"])
        if task == "sampled":
            return L.sampled_softmax_loss(enc.user, model.items, t["targets"], log_pop, 40, 16)
        if task == "behaviour":
            return L.behaviour_loss(heads["behaviour"], t["target_behaviours"])
        if task == "next_category":
            return L.next_category_loss(heads["next_category"], t["target_categories"])
        return L.user_category_loss(heads["user_category"], t["user_categories"])

    torch.manual_seed(1)
    first = float(loss_fn().detach())
    for _ in range(30):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    torch.manual_seed(1)
    assert float(loss_fn().detach()) < 0.8 * first


def test_label_smoothing_matches_torch_and_skips_masked_items():
    torch.manual_seed(0)
    user, table = torch.randn(4, 8), torch.randn(11, 8)
    targets = torch.tensor([1, 5, 10, 3])
    ours = L.full_softmax_loss(user, table, targets, label_smoothing=0.1)
    ref = torch.nn.functional.cross_entropy(user @ table[1:].T, targets - 1, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)
    seen = (torch.tensor([0, 0, 2]), torch.tensor([2, 7, 4]))
    logp = L.catalog_log_probs(user, table, seen)
    assert torch.isinf(logp[0, 1]) and torch.isinf(logp[0, 6]) and torch.isinf(logp[2, 3])
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(4))
    masked = L.full_softmax_loss(user, table, targets, label_smoothing=0.1, seen=seen)
    assert torch.isfinite(masked) and masked < ours


def test_seen_mask_lists_each_earlier_item_but_never_a_target(tiny):
    ds, split = tiny
    s = training_samples(split)
    index = np.arange(0, len(s), 7)
    b = BatchBuilder(ds, split, s, max_len=10, future=2, mask_seen=True)(index)
    rows, items = b.seen
    seq = split.sequences
    for r, i in enumerate(index):
        history = set(seq.items[s.start[i] : s.end[i]].tolist())
        wanted = history - {int(b.targets[r])} - set(b.future_targets[r].tolist())
        assert set(items[rows == r].tolist()) == wanted


def test_uncertainty_weighting_learns_a_task_weight():
    losses = {"retrieval": torch.tensor(4.0), "behaviour": torch.tensor(0.5)}
    log_vars = torch.zeros(3, requires_grad=True)
    total = L.combine(losses, {"retrieval": 1.0, "behaviour": 1.0, "interest": 1.0}, log_vars)
    total.backward()
    # d/ds (exp(-s) L + s) = 1 - L: a large loss pushes its log-variance up, a small one down
    assert log_vars.grad[0] < 0 < log_vars.grad[1]
    assert log_vars.grad[2] == 0
    plain = L.combine(losses, {"retrieval": 1.0, "behaviour": 0.5})
    assert float(plain) == pytest.approx(4.25)


def test_gate_diagnostics_group_histories_by_the_generators_sessions():
    """A stand-in model whose gate is 1 exactly when the last event follows a long gap
    (a new session) must score 1 on session starts and 0 deep inside sessions."""
    from edgerec.training.diagnostics import gate_by_session_position
    from edgerec.training.model import UserEncoding

    ds = generate_synthetic(SyntheticConfig(n_users=40, n_items=30, seed=2))
    split = leave_one_out(ds)

    class GapGate(torch.nn.Module):
        def eval(self):
            return self

        def items(self):
            return torch.zeros(31, 4)

        use_request = False

        def encode_users(
            self, items, behaviours, gaps, lengths, item_table=None, request_gaps=None
        ):
            last_gap = gaps.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
            gap = request_gaps if self.use_request else last_gap
            gate = (gap >= 15).float()  # log2(1 + seconds) >= 13: hours, not minutes
            z = torch.zeros(len(lengths), 4)
            return UserEncoding(z, gate, z, z, torch.zeros_like(items, dtype=torch.float))

    report = gate_by_session_position(GapGate(), ds, split, max_len=20)
    assert report["session_start"]["n"] > 0 and report["strong_session"]["n"] > 0
    assert report["session_start"]["mean_gate"] == 1.0
    assert report["strong_session"]["mean_gate"] == 0.0
    assert report["all"]["n"] == 2 * ds.n_users
    # a gate reading the request time: the request's own session position
    model = GapGate()
    model.use_request = True
    report = gate_by_session_position(model, ds, split, max_len=20)
    assert report["next_starts_session"]["mean_gate"] == 1.0
    assert report["strong_session_continues"]["n"] > 0
    assert report["strong_session_continues"]["mean_gate"] == 0.0


def test_disjoint_horizons_keep_the_recent_window_out_of_the_long_term_vector():
    model = make_model(long_term="before_window", short_term="window").eval()
    items, beh, gaps, lengths = random_inputs(B=4, L=9)
    lengths[:] = 9
    items = torch.randint(1, 41, (4, 9), generator=torch.Generator().manual_seed(1))
    changed = items.clone()
    changed[:, -model.cfg.window :] = torch.randint(1, 41, (4, model.cfg.window))
    with torch.no_grad():
        a = model.encode_users(items, beh, gaps, lengths)
        b = model.encode_users(changed, beh, gaps, lengths)
        torch.testing.assert_close(a.long, b.long)
        assert (a.short - b.short).abs().max() > 1e-3  # the window is the short-term input
        changed_old = items.clone()
        changed_old[:, 0] = changed_old[:, 0] % 40 + 1
        c = model.encode_users(changed_old, beh, gaps, lengths)
        torch.testing.assert_close(a.short, c.short)  # and older events are not
        assert (a.long - c.long).abs().max() > 1e-4


def test_runs_of_the_replaced_gate_context_option_refuse_to_load_instead_of_changing_meaning():
    from edgerec.errors import EdgerecError

    old = ModelConfig().to_dict()
    del old["request_time"]
    assert ModelConfig.from_dict({**old, "gate_context": False}).request_time is False
    with pytest.raises(EdgerecError, match="gate_context"):
        ModelConfig.from_dict({**old, "gate_context": True})
