"""The same work through the trained PyTorch model in eager mode: the comparison point.

"Same work" means what ``Recommender.recommend`` does for a batch of histories given as
original ids: map ids to rows and encode the time gaps (numpy, as the runtime does), run
the user tower, score the whole catalog, mask padding and seen items, take the top k
and map rows back to ids. The model is the run's own (the teacher when the bundle was
distilled), reading the same item matrix the runtime scores. This module is imported
only when torch is installed and a run directory is known.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgerec.benchmark import workload
from edgerec.errors import EdgerecError
from edgerec.features import gap_buckets


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(int(n), 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchModel:
    """The run's model, checked against the bundle it is compared with."""

    def __init__(self, run_dir: Path | str, dims, behaviour_index: int) -> None:
        import torch

        from edgerec.training.checkpoint import load_run

        run = load_run(run_dir)
        cfg = run.model_config
        mismatch = [
            f"{name} {getattr(cfg, name)} vs {getattr(dims, name)}"
            for name in ("n_items", "dim", "max_len")
            if getattr(cfg, name) != getattr(dims, name)
        ]
        if mismatch:
            raise EdgerecError(
                f"{run_dir}: this run does not match the bundle ({'; '.join(mismatch)}); "
                "pass the run the bundle was exported from with --run"
            )
        self.run_dir = Path(run_dir)
        self.model = run.model.eval()
        self.max_len = int(cfg.max_len)
        self.behaviour_index = int(behaviour_index)
        self.torch = torch
        self.parameters = int(sum(p.numel() for p in self.model.user.parameters()))

    def stages(
        self, histories: workload.Histories, matrix: np.ndarray, item_ids: tuple, k: int
    ) -> TorchStages:
        return TorchStages(self, histories, matrix, item_ids, k)


class TorchStages:
    """Timed entry points (encode, score, end to end), mirroring ``adapter.Stages``."""

    def __init__(
        self,
        tm: TorchModel,
        histories: workload.Histories,
        matrix: np.ndarray,
        item_ids: tuple,
        k: int,
    ) -> None:
        torch = tm.torch
        self.tm = tm
        self.h = histories
        self.k = min(int(k), matrix.shape[0] - 1)
        table = np.ascontiguousarray(matrix, dtype=np.float32)
        if not table.flags.writeable:  # torch warns on read-only arrays; it never writes here
            table = table.copy()
        self.table = torch.from_numpy(table)
        self.index = {x: i + 1 for i, x in enumerate(item_ids)}
        self.ids = item_ids
        self.users = self.encode()
        # like the runtime: every history event counts as seen, not only the ones read
        self.seen = torch.from_numpy(histories.rows.copy())

    def _inputs(self):
        L = self.tm.max_len
        index = self.index
        rows = np.array([[index[x] for x in h[-L:]] for h in self.h.ids], dtype=np.int64)
        ts = np.array([t[-L:] for t in self.h.timestamps], dtype=np.int64)
        lengths = np.full(rows.shape[0], rows.shape[1], dtype=np.int64)
        beh = np.full(rows.shape, self.tm.behaviour_index, dtype=np.int64)
        return rows, beh, gap_buckets(ts, lengths), lengths

    def encode(self):
        torch = self.tm.torch
        arrays = self._inputs()
        with torch.inference_mode():
            tensors = [torch.from_numpy(a) for a in arrays]
            return self.tm.model.encode_users(*tensors, item_table=self.table).user

    def _topk(self, users):
        torch = self.tm.torch
        with torch.inference_mode():
            scores = self.tm.model.score_all(users, self.table)
            scores[:, 0] = float("-inf")
            scores.scatter_(1, self.seen, float("-inf"))
            return torch.topk(scores, self.k, dim=1)

    def score(self):
        return self._topk(self.users)

    def end_to_end(self):
        _, rows = self._topk(self.encode())
        ids = self.ids
        return [[ids[r - 1] for r in row] for row in rows.tolist()]
