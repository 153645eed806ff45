"""service/engines/vllm_cpu_lora.py: the batched LoRA products give vLLM's own results, and vLLM
finds the plugin that installs them."""

from __future__ import annotations

import pytest
import torch

from service.engines import vllm_cpu_lora

lora_ops = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

# vLLM's own implementations, kept before any plugin could replace them
ORIGINAL = {
    name: getattr(lora_ops, name) for name in ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")
}


def _case(seed: int, tokens: int, slots: int, rank: int, width: int, four_d: bool):
    g = torch.Generator().manual_seed(seed)
    # -1: tokens without an adapter, as vLLM marks them
    indices = torch.randint(-1, slots, (tokens,), generator=g)
    shape = (slots, 1, rank, width) if four_d else (slots, rank, width)
    a = torch.randn(shape, generator=g, dtype=torch.bfloat16)
    shape = (slots, 1, width, rank) if four_d else (slots, width, rank)
    b = torch.randn(shape, generator=g, dtype=torch.bfloat16)
    x = torch.randn(tokens, width, generator=g, dtype=torch.bfloat16)
    return indices, a, b, x


@pytest.mark.parametrize("tokens", [1, 7, 300])
@pytest.mark.parametrize("four_d", [False, True])
def test_batched_products_match_vllms_own(tokens: int, four_d: bool) -> None:
    assert all(fn.__module__ == lora_ops.__name__ for fn in ORIGINAL.values())  # not ours
    indices, a, b, x = _case(tokens, tokens, slots=4, rank=8, width=48, four_d=four_d)
    want, got = torch.zeros(tokens, 16), torch.zeros(tokens, 16)
    ORIGINAL["bgmv_shrink"](x, a, want, indices, 0.5)
    vllm_cpu_lora.bgmv_shrink(x, a, got, indices, 0.5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    shrunk = torch.randn(tokens, 8)
    for add in (False, True):
        start = torch.randn(tokens, 52)  # wider than the adapter: padding left as it is
        want, got = start.clone(), start.clone()
        ORIGINAL["bgmv_expand"](shrunk, b, want, indices, add)
        vllm_cpu_lora.bgmv_expand(shrunk, b, got, indices, add)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
        start = torch.randn(tokens, 120)
        want, got = start.clone(), start.clone()
        ORIGINAL["bgmv_expand_slice"](shrunk, b, want, indices, 40, 48, add)
        vllm_cpu_lora.bgmv_expand_slice(shrunk, b, got, indices, 40, 48, add)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
        assert torch.equal(got[:, :40], start[:, :40]) and torch.equal(got[:, 88:], start[:, 88:])


def _vllms_own(monkeypatch: pytest.MonkeyPatch, punica_cpu) -> None:  # noqa: ANN001
    """vLLM's ops back in both modules (monkeypatch restores what was there after the test)."""
    for module in (lora_ops, punica_cpu):
        for name, fn in ORIGINAL.items():
            monkeypatch.setattr(module, name, fn)


def test_vllm_loads_the_plugin_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import entry_points

    from vllm.lora.punica_wrapper import punica_cpu
    from vllm.platforms import current_platform

    found = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert found.get("polingo_cpu_lora") == "service.engines.vllm_cpu_lora:register"
    if not current_platform.is_cpu():
        pytest.skip("vllm-cpu only")
    _vllms_own(monkeypatch, punica_cpu)
    monkeypatch.setenv(vllm_cpu_lora.KERNELS_ENV, "vllm")
    vllm_cpu_lora.register()
    assert punica_cpu.bgmv_expand is ORIGINAL["bgmv_expand"]  # the opt-out keeps vLLM's
    monkeypatch.delenv(vllm_cpu_lora.KERNELS_ENV)
    vllm_cpu_lora.register()
    for module in (lora_ops, punica_cpu):
        assert module.bgmv_shrink is vllm_cpu_lora.bgmv_shrink
        assert module.bgmv_expand_slice is vllm_cpu_lora.bgmv_expand_slice

    def other_shrink(inputs, weights, out, indices, scaling, extra):  # noqa: ANN001, ANN202
        raise AssertionError("not called")

    _vllms_own(monkeypatch, punica_cpu)
    monkeypatch.setattr(lora_ops, "bgmv_shrink", other_shrink)  # a vLLM with other arguments
    vllm_cpu_lora.register()
    assert punica_cpu.bgmv_expand is ORIGINAL["bgmv_expand"]  # all of vLLM's kept
