"""Where each process spent its samples, from a py-spy raw (collapsed-stack) file, as
`bench/gpu/engine_only.py --py-spy FILE` writes it: per process, the share of samples
idle (waiting in a poll, select, sleep or lock) and the functions that hold the most
samples, inclusive and self.

    python bench/spy_summary.py FILE [--top 25] [--match TEXT]

``--match`` adds the inclusive share of every function whose name contains TEXT.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

IDLE = re.compile(
    r"\b(select|poll|epoll|wait|sleep|sched_yield|_recv|recv_multipart|acquire|acquire_read|get)"
    r"\b \("
)
PROCESS = re.compile(r'process (\d+):"(.*?)"(?:;|$)')


def parse(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    """Stacks by process (root first), each with its sample count."""
    by_process: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # py-spy names the process (with --subprocesses, the parent first, then the
        # child): `process PID:"COMMAND LINE";` where the command line may hold ';'
        name = "?"
        while m := PROCESS.match(stack):
            name = f"{m.group(1)} {m.group(2)[:60]}"
            stack = stack[m.end() :]
        by_process[name].append((stack.split(";") if stack else [], int(count)))
    return by_process


def summary(stacks: list[tuple[list[str], int]], top: int, match: list[str]) -> list[str]:
    total = sum(n for _, n in stacks)
    idle = sum(n for frames, n in stacks if frames and IDLE.search(frames[-1]))
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in stacks:
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    lines = [f"  samples {total}, idle {100 * idle / max(total, 1):.1f}%"]
    lines.append("  self:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    for text in match:
        lines.append(f"  matching {text!r}:")
        hits = [(f, n) for f, n in inclusive.items() if text in f]
        lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in sorted(hits, key=lambda x: -x[1])]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", action="append", default=[])
    opts = parser.parse_args()
    for name, stacks in sorted(parse(opts.file).items(), key=lambda kv: -sum(n for _, n in kv[1])):
        print(f"process {name}")
        print("\n".join(summary(stacks, opts.top, opts.match)))


if __name__ == "__main__":
    main()
