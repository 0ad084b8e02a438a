"""The bundle's README.md: a model card generated from the manifest, so it cannot drift."""

from __future__ import annotations


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def model_card(manifest: dict, file_sizes: dict[str, int]) -> str:
    dims = manifest["dims"]
    src = manifest.get("source", {})
    lines = [
        f"# edgerec bundle: {src.get('dataset', 'unknown data')}",
        "",
        "A long/short-term interest recommender exported by "
        f"edgerec {manifest['edgerec_version']} on {manifest['created_at']}. "
        "Any ONNX runtime can use it; `edgerec.runtime.Recommender.load(<this folder>)` "
        "is the Python way (numpy + onnxruntime + tokenizers, no torch).",
        "",
        "## What it does",
        "",
        "- `user_encoder*.onnx`: a user's recent history (item indices, behaviours, time-gap "
        "buckets) -> a user vector, the long/short-term gate (1 = long-term interest "
        "dominates) and the attention over the history. Scores are `items @ user`.",
        "- `text_encoder*.onnx`: an item's text -> a text-only item vector, for items that "
        "were not in the training catalog (cold start).",
        "- `items.npy`: the trained catalog's item vectors (row 0 is padding); "
        "`items.json` maps rows to the original ids and titles; `popularity.npy` serves "
        "users with an empty history.",
        "",
        "## Dimensions",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in dims.items()]
    lines += [
        f"| behaviours | {', '.join(manifest['behaviour_vocab'])} "
        f"(default {manifest['default_behaviour']}) |",
        f"| opset / IR version | {manifest['opset']} / {manifest['ir_version']} |",
        f"| item matrix | {manifest['item_matrix']['dtype']} |",
        f"| scoring | {manifest.get('scoring', {}).get('method', 'numpy')} |",
        "",
        "## Files",
        "",
        "| file | size |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | {_size(size)} |" for name, size in sorted(file_sizes.items())]
    quality = manifest.get("quality") or {}
    precisions = [p for p in ("fp32", "int8", "fp16") if p in quality]
    if precisions:
        lines += [
            "",
            f"## Quality ({quality.get('stage', 'test')} users, leave-one-out, full ranking)",
            "",
            "| precision | HR@10 | NDCG@10 | NDCG@10 drop vs fp32 |",
            "| --- | --- | --- | --- |",
        ]
        for p in precisions:
            q = quality[p]
            drop = q.get("ndcg@10_drop_vs_fp32")
            label = p if p in manifest["precisions"] else f"{p} (reference, not shipped)"
            lines.append(
                f"| {label} | {q['hr@10']:.4f} | {q['ndcg@10']:.4f} | "
                f"{'-' if drop is None else f'{drop:.2%}'} |"
            )
    parity = manifest.get("parity") or {}
    if parity:
        user, text = parity.get("user_encoder", {}), parity.get("text_encoder", {})
        lines += [
            "",
            "## Parity with PyTorch (fp32 graphs)",
            "",
            f"- user encoder: max abs difference {user.get('max_abs_user', float('nan')):.2e} "
            f"over {user.get('users', 0)} validation users; identical top-10 lists for "
            f"{user.get('top10_identical', 0):.2%}",
            f"- text encoder: max abs difference "
            f"{text.get('max_abs_item_vector', float('nan')):.2e} over {text.get('texts', 0)} "
            "catalog texts",
            f"- tolerance {parity.get('tolerance')}",
        ]
    distillation = manifest.get("distillation")
    if distillation:
        lines += ["", "## Distillation", ""]
        for role in ("text_encoder", "user_encoder"):
            d = distillation.get(role)
            if not d:
                continue
            lines.append(
                f"- {role}: {d.get('student_parameters', 0):,} parameters "
                f"(teacher {d.get('teacher_parameters', 0):,}); "
                + ", ".join(
                    f"{k} {v:.4f}"
                    for k, v in d.items()
                    if isinstance(v, float) and ("cosine" in k or "ndcg" in k)
                )
            )
    lines += [
        "",
        "## Limits",
        "",
        "- Trained on the data named above; item vectors of new items come from text only "
        "and rank below warm items with the same text.",
        "- Histories longer than `max_len` keep only their latest events.",
        "- No file in this folder is a pickle; `manifest.json` lists each file's sha256.",
        "",
    ]
    return "\n".join(lines)
