"""A short report beside each manifest: loss curve (PNG), metrics, examples."""

from __future__ import annotations

import json
from pathlib import Path

from core.registry import Manifest

REPORT_DIR = "report"


def write_report(
    folder: Path,
    manifest: Manifest,
    losses: list[tuple[int, float]] | None,
    examples: list[dict[str, str]],
) -> Path:
    out = folder / REPORT_DIR
    out.mkdir(exist_ok=True)
    if losses:
        (out / "loss.json").write_text(json.dumps(losses))
        _plot_loss(losses, out / "loss.png", f"{manifest.name}@{manifest.version}")
    elif (out / "loss.json").is_file():
        losses = [tuple(x) for x in json.loads((out / "loss.json").read_text())]  # type: ignore[misc]
    if examples:
        (out / "examples.json").write_text(json.dumps(examples, ensure_ascii=False, indent=1))
    elif (out / "examples.json").is_file():
        examples = json.loads((out / "examples.json").read_text())

    lines = [f"# {manifest.name}@{manifest.version}", ""]
    lines += [f"- base model: `{manifest.base_model}`", f"- parent: {manifest.parent or '-'}"]
    lines += [
        f"- data: {manifest.data.train_pairs} training pairs, "
        f"fingerprint `{manifest.data.fingerprint}`"
    ]
    lines += [f"- created: {manifest.created_at}", f"- command: `{manifest.command or '-'}`", ""]
    if losses:
        lines += [
            f"![loss]({'loss.png'})",
            "",
            f"loss {losses[0][1]:.3f} -> {losses[-1][1]:.3f}",
            "",
        ]
    if manifest.metrics:
        lines += ["| metric | adapter | copy source |", "| --- | --- | --- |"]
        for key, value in manifest.metrics.items():
            baseline = manifest.baseline_metrics.get(key)
            lines.append(f"| {key} | {value:g} | {'-' if baseline is None else f'{baseline:g}'} |")
        lines.append("")
    for ex in examples[:5]:
        lines += [
            f"- **source**: {ex['source']}",
            f"  - reference: {ex['reference']}",
            f"  - output: {ex['output']}",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _plot_loss(losses: list[tuple[int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([s for s, _ in losses], [v for _, v in losses], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
