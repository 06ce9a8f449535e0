"""compiled_resnets="cudnn" on the CPU: the fused resnet's decomposition (norm1's scale and shift from its input, conv1
with the time embedding in its bias and its output sums giving norm2, conv2 with the skip added) equals diffusers'
ResnetBlock2D, eagerly and compiled; the operator's unfused path is what the CPU runs (cuDNN is measured on a GPU:
scripts/bench_cudnn_conv.py)."""
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D

from difix_ns.fixers.cudnn_conv import (
    FusedResnetBlock2D,
    fused_resnet_applies,
    norm_silu_conv3x3,
    use_fused_resnets,
)
from difix_ns.fixers.group_norm import scale_shift_from_sums


def _block(in_channels=16, out_channels=16, temb_channels=None, **kwargs):
    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels, groups=4,
                          eps=1e-6, **kwargs).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    return block


@pytest.mark.parametrize("in_channels,out_channels,temb_channels", [(16, 16, None), (16, 32, 8)])
def test_fused_resnet_equals_resnet_block(in_channels, out_channels, temb_channels):
    """The VAE's kind (no time embedding, identity skip) and the UNet's (time embedding, 1x1 conv shortcut)."""
    block = _block(in_channels, out_channels, temb_channels)
    x = torch.randn(2, in_channels, 6, 10) * 2 + 0.5
    temb = torch.randn(2, 8) if temb_channels else None
    with torch.no_grad():
        want = block(x, temb)
        assert use_fused_resnets(block, "cudnn") == 1 and type(block) is FusedResnetBlock2D
        assert torch.equal(block(x, temb), want)  # eager calls stay ResnetBlock2D.forward
        got = block.fused_forward(x, temb)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)
    assert use_fused_resnets(block, "stock") == 1 and type(block) is ResnetBlock2D


def test_fused_resnet_compiles_through_the_custom_operator():
    block = _block(16, 32, 8)
    use_fused_resnets(block, "cudnn")
    x, temb = torch.randn(2, 16, 6, 10), torch.randn(2, 8)
    with torch.no_grad():
        got = torch.compile(block, dynamic=False)(x, temb)
        want = ResnetBlock2D.forward(block, x, temb)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)


def test_operator_sums_give_group_norm_of_its_output():
    gen = torch.Generator().manual_seed(2)
    x, w = torch.randn(2, 8, 5, 7, generator=gen), torch.randn(12, 8, 3, 3, generator=gen)
    scale, shift = torch.rand(2, 8, generator=gen) + 0.5, torch.randn(2, 8, generator=gen)
    bias, skip = torch.randn(2, 12, generator=gen), torch.randn(2, 12, 5, 7, generator=gen)
    y, sums, sums_sq = norm_silu_conv3x3(x, scale, shift, w, bias, skip, True)
    want = F.conv2d(F.silu(x * scale[:, :, None, None] + shift[:, :, None, None]), w, padding=1)
    want = want + bias[:, :, None, None] + skip
    assert torch.allclose(y, want, atol=1e-4)
    gn_w, gn_b = torch.rand(12, generator=gen) + 0.5, torch.randn(12, generator=gen)
    scale2, shift2 = scale_shift_from_sums(sums, sums_sq, 35, 3, gn_w, gn_b, 1e-6)
    normed = y * scale2[:, :, None, None] + shift2[:, :, None, None]
    assert torch.allclose(normed, F.group_norm(want, 3, gn_w, gn_b, 1e-6), atol=1e-4)
    _, no_sums, no_sums_sq = norm_silu_conv3x3(x, scale, shift, w, bias, None, False)
    assert no_sums.shape == no_sums_sq.shape == (2, 0)


def test_fused_resnet_applies_only_to_the_plain_pattern():
    assert fused_resnet_applies(_block())
    assert not fused_resnet_applies(_block(up=True))
    assert not fused_resnet_applies(_block(output_scale_factor=2.0))
    assert not fused_resnet_applies(_block(temb_channels=8, time_embedding_norm="scale_shift"))
    block = _block(up=True)
    use_fused_resnets(block, "cudnn")
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():  # not the pattern: the compiled graph falls back to the block's own forward
        assert torch.allclose(torch.compile(block, dynamic=False)(x, None), ResnetBlock2D.forward(block, x, None),
                              atol=1e-5)
    with pytest.raises(ValueError, match="resnet kind must be one of stock, cudnn"):
        use_fused_resnets(block, "triton")
