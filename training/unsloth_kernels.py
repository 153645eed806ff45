"""One change to Unsloth's LoRA MLP for 3B QLoRA training on CUDA: less memory a step.

The MLP's backward turns the gradient of ``h = silu(e) * g`` into those of ``e`` and
``g``. Eagerly, Unsloth runs a Triton kernel that writes the three results over its three
inputs. Inside its compiled decoder blocks it gives torch.compile a traced version
instead, which allocates three new MLP-width tensors (rows x 8192 for Llama 3.2 3B): at
the step's peak these were half of the six largest blocks (docs/benchmarks.md, "where
the memory goes"). Wrapped as a custom op that declares what it mutates, the eager
kernel runs inside the compiled blocks too.
"""

from collections.abc import Callable

import torch

from training.console import log

_backward = None  # the replacement, built once a process (a custom op registers once)


def use_inplace_swiglu_backward() -> bool:
    """Route Unsloth's LoRA MLP backward through its in-place kernel; call before the
    model's first forward. False (and nothing changed) if this Unsloth lacks the hook."""
    global _backward
    from unsloth.kernels import fast_lora, swiglu

    eager_kernel = getattr(swiglu, "swiglu_DWf_DW_dfg_kernel", None)
    if eager_kernel is None or not hasattr(fast_lora, "swiglu_DWf_DW_dfg_kernel"):
        log(
            "warning: this Unsloth has no swiglu_DWf_DW_dfg_kernel; "
            "the SwiGLU backward keeps Unsloth's own path"
        )
        return False
    if _backward is None:
        _backward = _register(eager_kernel)
    # apply_lora_mlp_swiglu reads this module global on every call
    fast_lora.swiglu_DWf_DW_dfg_kernel = _backward
    return True


def _register(eager_kernel: Callable[..., object]) -> Callable[..., tuple]:
    @torch.library.custom_op("polingo::swiglu_backward_", mutates_args=("dw", "e", "g"))
    def swiglu_backward_(dw: torch.Tensor, e: torch.Tensor, g: torch.Tensor) -> None:
        eager_kernel(dw, e, g)  # not compiling here, so Unsloth takes its Triton path

    @swiglu_backward_.register_fake
    def _(dw: torch.Tensor, e: torch.Tensor, g: torch.Tensor) -> None:
        return None

    def backward(
        dw: torch.Tensor, e: torch.Tensor, g: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.ops.polingo.swiglu_backward_(dw, e, g)
        return dw, e, g  # now h, df, de, as Unsloth's LoRA_MLP.backward expects

    return backward


def use_flash_varlen_for_packing() -> bool:
    """Packed rows (``--packing``) through one flash varlen call a layer on torch 2.11.

    Unsloth sends a packed row to torch's ``varlen_attn`` only when it takes
    ``enable_gqa`` (torch 2.12 on). Before that it runs one SDPA call per run of
    equal-length pairs (``_sdpa_packed_segments``): tens of launches a layer, which made
    packing 0.80x the default on the H200 (docs/benchmarks.md). The flash kernel under
    both takes grouped K/V heads natively, and Unsloth already has an eager path that
    calls it directly (``_LeanFlashVarlen``); this turns that path on. False (nothing
    changed) where Unsloth has varlen already, lacks the hook, or flash is not built in.
    """
    from unsloth.utils import attention_dispatch as dispatch

    lean = getattr(dispatch, "_LeanFlashVarlen", None)
    if dispatch._TORCH_VARLEN_ATTN is not None:
        return False  # torch >= 2.12: Unsloth's own varlen path is on
    if lean is None or not hasattr(torch.ops.aten, "_flash_attention_forward"):
        log("warning: this Unsloth has no flash varlen hook; packed attention stays per segment")
        return False
    if not torch.backends.cuda.is_flash_attention_available():
        return False

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale, window_size, enable_gqa):  # noqa: ANN001, ANN202, ARG001
        # Unsloth passes cu_k = cu_q and max_k = max_q (self-attention over one row)
        left, right = window_size
        return lean.apply(q, k, v, cu_q, max_q, (left, right) == (-1, 0), scale, left, right)

    dispatch._TORCH_VARLEN_ATTN = varlen
    dispatch._LEAN_VARLEN = True
    dispatch._varlen_can_use_cudnn = lambda *args, **kwargs: False  # cuDNN SDPA is off anyway
    return True
