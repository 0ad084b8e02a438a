"""Checks of what the model learned against the synthetic generator's ground truth.

The synthetic world knows, for every event, its position in its browsing session and
the session's intent. The gate (weight of the long-term vector) should be high when a
history ends at a session's first event (one event of the new intent, after a long
gap: little short-term evidence) and low when it ends deep inside a session whose
events follow its intent (strong short-term evidence).
"""

from __future__ import annotations

import numpy as np

from edgerec.data.schema import Dataset
from edgerec.data.split import LeaveOneOut
from edgerec.training.inputs import stage_inputs, stage_request_gaps


def user_gates(
    model, split: LeaveOneOut, users: np.ndarray, stage: str, max_len: int, device="cpu"
):
    """Gate value of each user's ``stage`` history (numpy, in [0, 1]) and the share of the
    short-term term in the fused vector, ``|(1-g)*short| / (|g*long| + |(1-g)*short|)``.

    The share is what says which horizon drove the vector: the gate alone is not
    identifiable (scaling ``long`` up and the gate down gives the same user vector).
    """
    import torch

    model.eval()
    gates, shares = [], []
    with torch.no_grad():
        table = model.items().to(device)
        for i in range(0, len(users), 512):
            arrays = stage_inputs(split, users[i : i + 512], stage, max_len)
            t = [torch.from_numpy(a).to(device) for a in arrays]
            rgaps = torch.from_numpy(stage_request_gaps(split, users[i : i + 512], stage))
            enc = model.encode_users(*t, item_table=table, request_gaps=rgaps.to(device))
            gates.append(enc.gate.float().cpu().numpy())
            g = enc.gates if enc.gates is not None else enc.gate.unsqueeze(1)
            long_part = (g * enc.long).norm(dim=1)
            short_part = ((1 - g) * enc.short).norm(dim=1)
            shares.append((short_part / (long_part + short_part).clamp(min=1e-12)).cpu().numpy())
    if not gates:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(gates), np.concatenate(shares)


def gate_by_session_position(
    model, dataset: Dataset, split: LeaveOneOut, max_len: int, *, deep: int = 4, device="cpu"
) -> dict:
    """Mean gate of held-out histories grouped by where their last event sits.

    ``session_start``: the history's last event opens a session; ``strong_session``:
    it is at position >= ``deep`` of a session and at least 3 of the last 4 events are
    of the session's intent category. ``next_starts_session``: the request (the target
    event) opens a new session; ``strong_session_continues``: ``strong_session`` and the
    request continues that session. A model that knows the request time (``request_time``)
    can tell the last two apart. Uses the valid and test histories of every user.
    """
    truth = dataset.ground_truth
    if truth is None:
        raise ValueError(f"{dataset.name}: no ground truth (only synthetic data has one)")
    seq = split.sequences
    order = seq.order  # CSR position -> file order
    session_pos = np.asarray(truth["event_session_pos"])[order]
    intent = np.asarray(truth["event_intent"])[order]
    item_cat = np.r_[-1, np.asarray(truth["item_category"])][seq.items]
    follows = item_cat == intent

    users = np.arange(seq.n_users)
    gates, shares, starts, strongs, next_starts, next_deep, continues = ([] for _ in range(7))
    for stage in ("valid", "test"):
        last = split.history_end(stage) - 1  # CSR index of the last history event
        target = last + 1
        next_starts.append(session_pos[target] == 0)
        next_deep.append(session_pos[target] >= deep)
        g, share = user_gates(model, split, users, stage, max_len, device)
        recent = np.stack([follows[np.maximum(last - k, seq.offsets[:-1])] for k in range(4)])
        same_session = np.stack([session_pos[last] - k >= 0 for k in range(4)])
        strong = (session_pos[last] >= deep) & ((recent & same_session).sum(0) >= 3)
        gates.append(g)
        shares.append(share)
        starts.append(session_pos[last] == 0)
        strongs.append(strong)
        continues.append(strong & (session_pos[target] > 0))
    g = np.concatenate(gates)
    sh = np.concatenate(shares)
    groups = {
        "session_start": np.concatenate(starts),
        "strong_session": np.concatenate(strongs),
        "next_starts_session": np.concatenate(next_starts),
        "next_deep_in_session": np.concatenate(next_deep),
        "strong_session_continues": np.concatenate(continues),
        "all": np.ones(len(g), dtype=bool),
    }
    nan = float("nan")
    return {
        name: {
            "n": int(m.sum()),
            "mean_gate": float(g[m].mean()) if m.any() else nan,
            "short_share": float(sh[m].mean()) if m.any() else nan,
        }
        for name, m in groups.items()
    }
