"""``translate-po``: fill the untranslated entries of gettext catalogs by machine translation.

translate-po locale/zh_TW/LC_MESSAGES/                 # in-process, offline default
translate-po --server http://127.0.0.1:8000 library/   # through a running service
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.filling import Catalog, Unit
from clients.runner import FileResult, Options, Runner, survey
from core.catalogs import find_catalogs
from core.settings import environment
from core.vllm_env import quiet_if_inherited
from service.schemas import MAX_BATCH

quiet_if_inherited()  # vLLM's engine processes import this module again (spawn)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Fill the entries of gettext catalogs that need a translation: untranslated, not obsolete
entries (never the header); fuzzy entries that msgmerge left with their previous source
("#| msgid") are updated: the model edits their translation to the new source instead of
starting over (--no-update-fuzzy leaves them); with --include-fuzzy the other fuzzy
entries are translated anew. Plural entries get
every msgstr[n] that the catalog's Plural-Forms asks for; msgctxt is sent as context.
Everything else in a file stays as it was, and the file is written as powrap (msgcat)
would write it, checked with msgfmt --check and sphinx-lint first.
"""

EPILOG = """\
marking:
  Machine translations are marked "#, fuzzy" so that a human reviews them (--no-fuzzy
  turns that off). Answers from the adapter's translation memory (the project's own
  reviewed translation of the very same msgid and msgctxt) are not marked.
  A translation with markup warnings (lost or added reST markup, changed placeholders,
  simplified-Chinese terms), or one that msgfmt --check or sphinx-lint rejects, is handled
  by --on-invalid: "fuzzy" (default) keeps it, marked fuzzy, with a "# polingo: ..."
  translator comment naming the problem; "skip" leaves the entry untranslated.

updates:
  An updated entry stays fuzzy, keeps its "#|" lines, and keeps the previous translation
  in a translator comment '# polingo: previous translation: "..."' (a JSON string), which
  msgcat, powrap and Poedit leave alone; `polingo review` shows both diffs and restores it
  with one key. Where the edit loses markup or adds sphinx-lint findings that the previous
  translation did not have, or the adapter has no update mode, the entry stays exactly
  as it was (reported as kept).

safety:
  Each file is replaced atomically (temporary file in its folder, fsync, rename, same
  permissions): an interruption (Ctrl-C, kill, crash) leaves it either untouched or
  completely written. On Ctrl-C or SIGTERM the entries answered so far are written
  before exiting; a rerun continues with what is still untranslated. Large files are
  also written every --checkpoint-every answered entries. A run holds FILE.po.lock
  (flock) while it works on FILE.po; a second run does NOT wait: it skips that file
  with a message (exit status 1). A file that someone else changed on disk meanwhile
  is not overwritten (exit status 1).

exit status:
  0  every entry that needed it was filled (or skipped by --on-invalid skip / as too long)
  1  some entries failed or were left (service errors, locked or changed files, a
     service that went away mid-run: what was answered is written)
  2  bad usage or unreadable input (a malformed catalog: file and line are printed), an
     unreachable service or an unknown adapter; nothing is written in that case
  130 interrupted (answered entries were written)

service:
  --server URL or the POLINGO_SERVER environment variable selects a running service;
  without either, the translator runs in this process on the offline default (the
  packaged gemma3-270m base with the project's default adapter zh-tw; where the package
  ships no adapter yet, the base model alone, with a warning).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translate-po",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help=".po files or folders (recursively)"
    )
    where = parser.add_argument_group("translation backend")
    where.add_argument(
        "--server",
        metavar="URL",
        type=_server_url,
        default=environment().server,
        help="base URL of a running polingo service (default: $POLINGO_SERVER; "
        "none: translate in this process)",
    )
    where.add_argument(
        "--adapter",
        metavar="NAME[@VERSION]",
        help="adapter to translate with (default: the service's default adapter)",
    )
    where.add_argument(
        "--registry",
        type=Path,
        metavar="DIR",
        help="in-process only: adapter registry to use instead of the packaged one",
    )
    where.add_argument(
        "--base-model", metavar="NAME", help="in-process only: base model alias or folder"
    )
    where.add_argument("--engine", choices=("vllm", "transformers"), help="in-process only: engine")
    what = parser.add_argument_group("what to fill and how")
    what.add_argument(
        "--include-fuzzy",
        action="store_true",
        help="also retranslate fuzzy entries (those without a previous msgid, and all of "
        "them with --no-update-fuzzy)",
    )
    what.add_argument(
        "--no-update-fuzzy",
        dest="update_fuzzy",
        action="store_false",
        help="do not update fuzzy entries that have a previous msgid (#| msgid) from their "
        "previous translation (default: update them)",
    )
    what.add_argument(
        "--no-fuzzy",
        dest="fuzzy",
        action="store_false",
        help='do not mark machine translations "#, fuzzy" (default: mark them)',
    )
    what.add_argument(
        "--on-invalid",
        choices=("fuzzy", "skip"),
        default="fuzzy",
        help="translations with markup warnings: keep as fuzzy with a translator "
        "comment naming the problem (fuzzy, the default) or leave the entry "
        "untranslated (skip)",
    )
    what.add_argument(
        "--min-confidence",
        type=_confidence,
        default=None,
        metavar="X",
        help="leave untranslated the drafts whose confidence (0-1, the service's; written "
        "as '# polingo: confidence X' beside each draft) is below X, or unknown (a "
        "service with POLINGO_CONFIDENCE off) (default: keep all)",
    )
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="list the entries that would be filled and a summary; translates "
        "nothing, writes nothing, contacts no service",
    )
    what.add_argument(
        "--show",
        type=_non_negative,
        default=0,
        metavar="N",
        help="print the first N entries filled (source and translation) after the report",
    )
    how = parser.add_argument_group("throughput")
    how.add_argument(
        "--batch-size",
        type=_positive,
        default=MAX_BATCH,
        metavar="N",
        help=f"texts per request (default and most: {MAX_BATCH})",
    )
    how.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        default=4,
        metavar="N",
        help="requests in flight at once (default: 4)",
    )
    how.add_argument(
        "--retries",
        type=_non_negative,
        default=8,
        metavar="N",
        help="retries of a request the service answers 503 (after its Retry-After) "
        "or whose connection is refused (default: 8)",
    )
    how.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=900.0,
        metavar="S",
        help="seconds to wait for one answer, and for a loading service to become ready "
        "(default: 900)",
    )
    how.add_argument(
        "--checkpoint-every",
        type=_non_negative,
        default=200,
        metavar="N",
        help="also write a file after every N answered entries, so that a kill "
        "loses at most about N entries of work (default: 200; 0: only at the end)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the warnings and logs of torch, transformers and vLLM (hidden by default)",
    )
    how.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    return parser


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _number(text, float, "a number of seconds")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _non_negative(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _number(text: str, kind: type[int] | type[float], what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _confidence(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 0 to 1")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before any request: nothing was changed
        print("translate-po: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from core.vllm_env import quiet_third_party

    quiet_third_party(verbose=args.verbose)
    if args.batch_size > MAX_BATCH:
        print(f"translate-po: --batch-size is at most {MAX_BATCH}", file=sys.stderr)
        return EXIT_USAGE
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    options = Options(
        include_fuzzy=args.include_fuzzy,
        update_fuzzy=args.update_fuzzy,
        fuzzy=args.fuzzy,
        on_invalid=args.on_invalid,
        min_confidence=args.min_confidence,
        jobs=args.jobs,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        progress=progress,
        show=args.show,
        retries=args.retries,
    )
    paths, errors = find_catalogs(args.paths)
    show = _print_dry_run if args.dry_run else None
    read: dict[Path, Catalog] = {}
    counts, bad = survey(
        paths,
        include_fuzzy=args.include_fuzzy,
        update_fuzzy=args.update_fuzzy,
        writable=not args.dry_run,
        show=show,
        keep=read,
    )
    errors += bad
    if errors:
        for error in errors:
            print(f"translate-po: {error}", file=sys.stderr)
        print("translate-po: nothing was written", file=sys.stderr)
        return EXIT_USAGE
    total = sum(counts.values())
    if args.dry_run:
        busy = sum(1 for n in counts.values() if n)
        print(f"would fill {total} entries in {busy} of {len(counts)} files")
        return EXIT_OK
    if total == 0:
        print(f"nothing to fill in {len(counts)} files")
        return EXIT_OK
    try:
        results, fatal = asyncio.run(
            _run(args, options, [p for p, n in counts.items() if n], total, read)
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "translate-po: interrupted; the entries answered so far were written", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except _Fatal as exc:
        print(f"translate-po: {exc}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    status = _report(results, fatal)
    _show(results, args.show)
    return status


def _server_url(value: str) -> str:
    from clients.backends import server_url

    try:
        return server_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Fatal(Exception):
    """The backend cannot be used at all: before any file was touched."""


async def _run(
    args: argparse.Namespace,
    options: Options,
    paths: list[Path],
    total: int,
    read: dict[Path, Catalog],
):
    from clients.backends import (
        BackendUnavailable,
        BackendUsageError,
        http_backend,
        in_process_backend,
    )

    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:  # SIGTERM: like Ctrl-C, write what was answered, then stop
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    if args.server:
        opener = http_backend(
            args.server,
            adapter=args.adapter,
            jobs=options.jobs,
            retries=args.retries,
            timeout_s=args.timeout,
            say=_say,
        )
    else:
        opener = in_process_backend(
            registry=args.registry,
            adapter=args.adapter,
            base_model=args.base_model,
            engine=args.engine,
            warn=_say,
        )
    async with contextlib.AsyncExitStack() as stack:
        try:
            backend = await stack.enter_async_context(opener)
        except (BackendUnavailable, BackendUsageError) as exc:
            raise _Fatal(str(exc)) from None
        print(
            f"translating {total} entries in {len(paths)} files with the {backend.label}",
            file=sys.stderr,
        )
        runner = Runner(backend, options, read)
        results = await runner.run(paths, total)
        if runner.fatal and not any(r.filled for r in results):
            raise _Fatal(runner.fatal)
        return results, runner.fatal


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _print_dry_run(catalog: Catalog, units: list[Unit]) -> None:
    for unit in units:
        kind = "fuzzy, redo" if unit.redo else "untranslated"
        if unit.previous is not None:
            kind = "fuzzy, update"
        if unit.forms:
            kind += f", plural: msgstr[{', '.join(map(str, unit.forms))}]"
        ctxt = f" [{unit.entry.msgctxt}]" if unit.entry.msgctxt else ""
        source = unit.entry.msgid.replace("\n", "\\n")
        source = source if len(source) <= 70 else source[:67] + "..."
        print(f"{catalog.path}:{unit.line}: ({kind}){ctxt} {source}")
    if units:
        print(f"{catalog.path}: {len(units)} entries would be filled")


def _report(results: list[FileResult], fatal: str | None) -> int:
    failed = False
    totals = FileResult(Path("total"))
    for result in sorted(results, key=lambda r: str(r.path)):
        for reason in result.reasons:
            print(reason, file=sys.stderr)
        if result.error:
            print(f"{result.path}: NOT DONE: {result.error}")
            failed = True
        else:
            print(f"{result.path}: {_counts(result)}")
        for name in (
            "filled",
            "from_memory",
            "updated",
            "flagged",
            "kept",
            "skipped",
            "failed",
            "left",
        ):
            setattr(totals, name, getattr(totals, name) + getattr(result, name))
        failed = failed or result.failed > 0 or result.left > 0
    print(f"total ({len(results)} files): {_counts(totals)}")
    if fatal:
        print(f"translate-po: stopped early: {fatal}", file=sys.stderr)
    return EXIT_FAILED if failed or fatal else EXIT_OK


def _show(results: list[FileResult], limit: int) -> None:
    shown = 0
    for result in sorted(results, key=lambda r: str(r.path)):
        for line, source, translation, fuzzy in result.examples:
            if shown == limit:
                return
            mark = " (fuzzy)" if fuzzy else ""
            print(f"\n{result.path}:{line}{mark}\n  en: {source}\n  zh: {translation}")
            shown += 1


def _counts(r: FileResult) -> str:
    text = (
        f"filled {r.filled} (from memory {r.from_memory}), flagged {r.flagged}, "
        f"skipped {r.skipped}, failed {r.failed}"
    )
    if r.updated or r.kept:
        text += f", fuzzy updated {r.updated}, kept {r.kept}"
    return text + (f", left {r.left}" if r.left else "")


if __name__ == "__main__":
    sys.exit(main())
