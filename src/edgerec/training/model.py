"""The long/short-term interest model, top to bottom.

Item tower: a frozen text embedding (from a BERT-family encoder, precomputed) is
projected to the scoring space and added to a learned ID embedding, so warm items carry
collaborative signal while a brand-new item still gets a usable text-only vector.

User tower: each history event is its item vector plus a behaviour embedding (e.g. the
rating) plus a time-gap bucket embedding, read by a bidirectional LSTM. The two
directions are two LSTMs over right-padded sequences; the backward one reads each
sequence reversed *within its own length*, so padding never reaches a real position and
no ``pack_padded_sequence`` is needed (it does not export to ONNX cleanly).
  - long-term interest: attention pooling over all outputs (or, with
    ``long_term="before_window"``, over the forward outputs older than the short-term
    window only, so the two horizons read disjoint events);
  - short-term interest: the last ``window`` outputs (see ``short_term`` in the config);
  - a learned gate g = sigmoid(MLP[long; short]) fuses them: u = g*long + (1-g)*short,
    either one weight per user (``gate="scalar"``: the gate then says directly how much
    the long-term interest drove the recommendation) or one per dimension (``"vector"``);
    with ``request_time`` the MLP also reads how long before the request the last event
    was (``request_gaps``; unknown = bucket 0): whether the request continues a session
    or opens a new one is what should decide between the horizons.

Score = u . v_item / temperature. Auxiliary heads predict the next event's behaviour and
the next item's categories (from the short-term vector) and the user's category
distribution (from the long-term vector).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgerec.features import N_GAP_BUCKETS
from edgerec.training.config import ModelConfig


class UserEncoding(NamedTuple):
    user: torch.Tensor  # (B, dim); from encode_users already divided by the temperature
    gate: torch.Tensor  # (B,) mean gate: weight of the long-term interest in [0, 1]
    long: torch.Tensor  # (B, dim)
    short: torch.Tensor  # (B, dim)
    attention: torch.Tensor  # (B, L) long-term attention over history positions
    gates: torch.Tensor | None = None  # (B, d) or (B, 1): the gate before averaging


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` steps of each row of (B, L, ...); padding stays put."""
    L = x.shape[1]
    pos = torch.arange(L, device=x.device).unsqueeze(0)  # (1, L)
    rev = lengths.unsqueeze(1) - 1 - pos
    idx = torch.where(rev >= 0, rev, pos)  # (B, L)
    idx = idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 1, idx)


class ItemTower(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("text_embeddings", torch.zeros(cfg.n_items + 1, cfg.text_dim))
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim)
        self.id_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
        if cfg.id_prior > 0:
            # n / (n + id_prior) per item from its training interactions (set by the
            # trainer; saved with the weights), so sparse items lean on their text vector
            self.register_buffer("id_scale", torch.ones(cfg.n_items + 1))

    def project_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text-only item vector: what a cold item gets from the exported text encoder."""
        return self.text_proj(text)

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of ``items`` (any shape) or of the whole table (n_items+1, dim)."""
        text = self.text_embeddings if items is None else self.text_embeddings[items]
        ids = self.id_emb.weight if items is None else self.id_emb(items)
        if self.cfg.id_prior > 0:
            scale = self.id_scale if items is None else self.id_scale[items]
            ids = ids * scale.unsqueeze(-1)
        use_text = "text" not in self.cfg.ablate
        use_id = "id" not in self.cfg.ablate
        vec = torch.zeros_like(ids)
        if use_text:
            vec = vec + self.project_text(text)
        if use_id:
            if self.training and use_text and self.cfg.id_dropout > 0:
                keep_shape = ids.shape[:-1] + (1,)
                keep = (torch.rand(keep_shape, device=ids.device) >= self.cfg.id_dropout).to(ids)
                ids = ids * keep
            vec = vec + ids
        return vec


class UserTower(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h = cfg.dim, cfg.hidden
        self.behaviour_emb = nn.Embedding(cfg.n_behaviours, d, padding_idx=0)
        self.gap_emb = nn.Embedding(N_GAP_BUCKETS, d, padding_idx=0)
        self.input_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm_fwd = nn.LSTM(d, h, batch_first=True)
        self.lstm_bwd = nn.LSTM(d, h, batch_first=True)
        self.attn = nn.Sequential(nn.Linear(2 * h, h), nn.Tanh(), nn.Linear(h, 1))
        self.long_out = nn.Linear(2 * h, d)
        # "window": only the backward direction, whose outputs at the last W positions
        # have read nothing but those W events, so the short-term vector cannot carry
        # older history; "bidirectional": both directions plus the forward end state.
        self.short_out = nn.Linear((2 if cfg.short_term == "window" else 3) * h, d)
        gate_out = 1 if cfg.gate == "scalar" else d
        # request_time: the time from the last event to the request tells the gate
        # whether the request continues a session (trust the recent window) or opens one
        gate_in = (3 if cfg.request_time else 2) * d
        self.gate = nn.Sequential(nn.Linear(gate_in, d), nn.ReLU(), nn.Linear(d, gate_out))

    def forward(
        self,
        item_vectors: torch.Tensor,  # (B, L, d), zero at padding
        behaviours: torch.Tensor,  # (B, L) int
        gaps: torch.Tensor,  # (B, L) int
        lengths: torch.Tensor,  # (B,) int, >= 1
        request_gaps: torch.Tensor | None = None,  # (B,) int gap bucket, 0 = unknown
    ) -> UserEncoding:
        B, L, _ = item_vectors.shape
        pos = torch.arange(L, device=item_vectors.device).unsqueeze(0)
        valid = pos < lengths.unsqueeze(1)  # (B, L)
        x = item_vectors + self.behaviour_emb(behaviours) + self.gap_emb(gaps)
        x = self.drop(self.input_norm(x)) * valid.unsqueeze(-1).to(x.dtype)
        fwd, _ = self.lstm_fwd(x)
        bwd_rev, _ = self.lstm_bwd(reverse_within_length(x, lengths))
        bwd = reverse_within_length(bwd_rev, lengths)
        out = torch.cat([fwd, bwd], dim=-1)  # (B, L, 2h)

        if self.cfg.long_term == "before_window":
            # disjoint horizons: forward outputs before the window have read nothing
            # from it, so the long-term vector cannot carry the recent events
            long_in = torch.cat([fwd, torch.zeros_like(bwd)], dim=-1)
            before = (lengths - self.cfg.window).clamp(min=1).unsqueeze(1)
            long_valid = valid & (pos < before)
        else:
            long_in, long_valid = out, valid
        scores = self.attn(long_in).squeeze(-1).masked_fill(~long_valid, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        long = self.long_out((weights.unsqueeze(-1) * long_in).sum(dim=1))

        window_start = (lengths - self.cfg.window).clamp(min=0)
        in_window = valid & (pos >= window_start.unsqueeze(1))
        wmask = in_window.unsqueeze(-1).to(out.dtype)
        if self.cfg.short_term == "window":
            window_mean = (bwd * wmask).sum(1) / wmask.sum(1).clamp(min=1.0)
            first = window_start.view(B, 1, 1).expand(-1, 1, bwd.shape[-1])
            bwd_first = torch.gather(bwd, 1, first).squeeze(1)  # has read the whole window
            short = self.short_out(torch.cat([window_mean, bwd_first], dim=-1))
        else:
            window_mean = (out * wmask).sum(1) / wmask.sum(1).clamp(min=1.0)
            last = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(-1, 1, fwd.shape[-1])
            fwd_last = torch.gather(fwd, 1, last).squeeze(1)
            short = self.short_out(torch.cat([window_mean, fwd_last], dim=-1))

        if "long" in self.cfg.ablate:
            gate = torch.zeros_like(short)
        elif "short" in self.cfg.ablate:
            gate = torch.ones_like(long)
        else:  # (B, d) per-dimension gate, or (B, 1) one weight per user
            feats = [long, short]
            if self.cfg.request_time:
                if request_gaps is None:
                    request_gaps = torch.zeros_like(lengths)
                elif self.training:  # also learn the case without a request time
                    request_gaps = request_gaps * (torch.rand(B, device=x.device) >= 0.2)
                feats.append(self.gap_emb(request_gaps))
            gate = torch.sigmoid(self.gate(torch.cat(feats, dim=-1)))
            p = self.cfg.horizon_dropout
            if self.training and p > 0:
                # one horizon alone for a share of the samples: neither vector can lean
                # on the other, so the gate learns which of two real predictors to trust
                r = torch.rand(B, 1, device=x.device)
                gate = torch.where(r < p / 2, 1.0, torch.where(r < p, 0.0, gate))
        user = gate * long + (1.0 - gate) * short
        return UserEncoding(user, gate.mean(dim=-1), long, short, weights, gate)


class InterestModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.items = ItemTower(cfg)
        self.user = UserTower(cfg)
        self.log_temperature = nn.Parameter(torch.zeros(()), requires_grad=cfg.learn_temperature)
        self.behaviour_head = nn.Sequential(
            nn.Linear(3 * d, d), nn.ReLU(), nn.Linear(d, cfg.n_behaviours)
        )
        n_cat = max(cfg.n_categories, 1)
        self.next_category_head = nn.Linear(d, n_cat)
        self.user_category_head = nn.Linear(d, n_cat)
        self.task_log_vars = nn.Parameter(torch.zeros(3))  # uncertainty weighting, if enabled

    def encode_users(
        self,
        items: torch.Tensor,
        behaviours: torch.Tensor,
        gaps: torch.Tensor,
        lengths: torch.Tensor,
        item_table: torch.Tensor | None = None,
        request_gaps: torch.Tensor | None = None,
    ) -> UserEncoding:
        """User vectors already divided by the temperature, so scores are plain dot products."""
        vecs = self.items(items) if item_table is None else F.embedding(items, item_table)
        vecs = vecs * (items > 0).unsqueeze(-1).to(vecs.dtype)
        enc = self.user(vecs, behaviours, gaps, lengths, request_gaps)
        return enc._replace(user=enc.user * torch.exp(-self.log_temperature))

    def score_all(self, user: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        table = self.items() if item_table is None else item_table
        return user @ table.T  # (B, n_items+1); column 0 is padding

    def heads(
        self, user: torch.Tensor, long: torch.Tensor, short: torch.Tensor, target_vecs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {
            "behaviour": self.behaviour_head(
                torch.cat([user, target_vecs, user * target_vecs], dim=-1)
            ),
            "next_category": self.next_category_head(short),
            "user_category": self.user_category_head(long),
        }
