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
from edgerec.training.inputs import stage_inputs


def user_gates(
    model, split: LeaveOneOut, users: np.ndarray, stage: str, max_len: int, device="cpu"
):
    """Gate value of each user's ``stage`` history (numpy, in [0, 1])."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        table = model.items().to(device)
        for i in range(0, len(users), 512):
            arrays = stage_inputs(split, users[i : i + 512], stage, max_len)
            t = [torch.from_numpy(a).to(device) for a in arrays]
            out.append(model.encode_users(*t, item_table=table).gate.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def gate_by_session_position(
    model, dataset: Dataset, split: LeaveOneOut, max_len: int, *, deep: int = 4, device="cpu"
) -> dict:
    """Mean gate of held-out histories grouped by where their last event sits.

    ``session_start``: the history's last event opens a session; ``strong_session``:
    it is at position >= ``deep`` of a session and at least 3 of the last 4 events are
    of the session's intent category. Uses the valid and test histories of every user.
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
    gates, starts, strongs, next_starts, next_deep = [], [], [], [], []
    for stage in ("valid", "test"):
        last = split.history_end(stage) - 1  # CSR index of the last history event
        target = last + 1
        next_starts.append(session_pos[target] == 0)
        next_deep.append(session_pos[target] >= deep)
        g = user_gates(model, split, users, stage, max_len, device)
        recent = np.stack([follows[np.maximum(last - k, seq.offsets[:-1])] for k in range(4)])
        same_session = np.stack([session_pos[last] - k >= 0 for k in range(4)])
        strong = (session_pos[last] >= deep) & ((recent & same_session).sum(0) >= 3)
        gates.append(g)
        starts.append(session_pos[last] == 0)
        strongs.append(strong)
    g = np.concatenate(gates)
    groups = {
        "session_start": np.concatenate(starts),
        "strong_session": np.concatenate(strongs),
        "next_starts_session": np.concatenate(next_starts),
        "next_deep_in_session": np.concatenate(next_deep),
        "all": np.ones(len(g), dtype=bool),
    }
    return {
        name: {"n": int(m.sum()), "mean_gate": float(g[m].mean()) if m.any() else float("nan")}
        for name, m in groups.items()
    }
