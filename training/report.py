"""A short report beside each manifest: loss curve (PNG), metrics of both held-out
splits, examples, and the failure report of each split (failures.json)."""

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
    failures: dict[str, dict[str, object] | None] | None = None,
) -> Path:
    """``failures``: split label -> training.failures.failure_report (failures.json);
    without it, the one written before is shown again."""
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

    if failures:
        (out / "failures.json").write_text(json.dumps(failures, ensure_ascii=False, indent=1))
    elif (out / "failures.json").is_file():
        failures = json.loads((out / "failures.json").read_text())

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
    for label, metrics, baseline in (
        ("pair split", manifest.metrics, manifest.baseline_metrics),
        ("document split", manifest.document_metrics, manifest.document_baseline_metrics),
    ):
        if metrics:
            lines += [
                f"## {label}",
                "",
                "| metric | adapter | copy source |",
                "| --- | --- | --- |",
            ]
            for key, value in metrics.items():
                base = baseline.get(key)
                lines.append(f"| {key} | {value:g} | {'-' if base is None else f'{base:g}'} |")
            lines.append("")
    if failures:
        lines += failure_lines(failures)
    for ex in examples[:5]:
        lines += [
            f"- **source**: {ex['source']}",
            f"  - reference: {ex['reference']}",
            f"  - output: {ex['output']}",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def failure_lines(failures: dict[str, dict[str, object] | None]) -> list[str]:
    """The failure reports of the splits side by side (training/failures.py)."""
    from training.failures import KINDS

    reports = {label: r for label, r in failures.items() if r}
    labels = list(reports)
    lines = ["## failures", "", "| | " + " | ".join(labels) + " |"]
    lines.append("| --- |" + " --- |" * len(labels))
    lines.append("| entries | " + " | ".join(str(reports[x]["entries"]) for x in labels) + " |")
    for kind in ("failing", *KINDS):
        cells = []
        for label in labels:
            r = reports[label]
            counts = r["counts"]
            assert isinstance(counts, dict)
            cells.append(str(r["failing"] if kind == "failing" else counts[kind]))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    for label in labels:
        examples = reports[label]["examples"]
        assert isinstance(examples, dict)
        lines += [f"{label}, by the most similar example shown (failing / entries, chrF prose):"]
        for band in examples["bands"]:
            if band["entries"]:
                lines.append(
                    f"- {band['band']}: {band['failing']} / {band['entries']}, "
                    f"chrF {band['chrf_prose'] if band['chrf_prose'] is not None else '-'}"
                )
        lines.append("")
    return lines


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
