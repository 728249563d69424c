"""Networks: importance in [0,1] at any page size, bounded Lab output, the attention model learns."""

import torch

from dualflow.models import AttentionNet, UNet
from dualflow.models.blocks import WindowAttentionBlock, positional_encoding_2d
from dualflow.stages.attention import complexity_target


def test_importance_in_range_at_any_page_size():
    net = AttentionNet(stride=8, dim=16, depth=2, heads=2, window=4).eval()
    for h, w in [(8, 8), (37, 91), (130, 64)]:
        imp = net.importance(torch.rand(1, 1, h, w))
        assert imp.shape == (1, 1, -(-h // 8), -(-w // 8))
        assert imp.min() >= 0 and imp.max() <= 1


def _attention_of_tokens(block: WindowAttentionBlock, tokens: torch.Tensor) -> torch.Tensor:
    """The block on (N,C) tokens that attend to each other only: plain softmax attention written out."""
    n, c = tokens.shape
    d = c // block.heads
    q, k, v = block.qkv(block.norm1(tokens)).view(n, 3, block.heads, d).permute(1, 2, 0, 3)
    attended = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1) @ v
    t = tokens + block.proj(attended.transpose(0, 1).reshape(n, c))
    return t + block.mlp(block.norm2(t))


def test_window_attention_handles_padding_and_is_local():
    block = WindowAttentionBlock(8, 2, window=4).eval()
    x = torch.randn(1, 8, 9, 10)
    with torch.no_grad():
        y = block(x)
        # The bottom-right window holds 2 real tokens (row 8, columns 8-9) and 14 of padding: the real ones
        # attend to each other only, as if the padding were not there.
        corner = _attention_of_tokens(block, x[0, :, 8, 8:10].T)
    assert y.shape == x.shape
    assert torch.allclose(y[0, :, 8, 8:10].T, corner, atol=1e-5)
    x2 = x.clone()
    x2[..., 8:, 8:] += 5  # change the bottom-right window only
    y2 = block(x2)
    assert torch.allclose(y[..., :4, :4], y2[..., :4, :4], atol=1e-5)


def test_positional_encoding_defined_for_any_grid():
    pe = positional_encoding_2d(5, 7, 16)
    assert pe.shape == (1, 16, 5, 7)
    assert torch.allclose(positional_encoding_2d(9, 9, 16)[..., :5, :7], pe)


def test_unet_output_is_bounded_normalised_lab_for_odd_sizes():
    net = UNet(in_channels=2, base=8, depth=3, attn_heads=2, window=4)
    y = net(torch.randn(2, 2, 37, 29) * 10)
    assert y.shape == (2, 3, 37, 29)
    assert y[:, 0].min() >= 0 and y[:, 0].max() <= 1 and y[:, 1:].abs().max() <= 1


def test_attention_model_learns_the_complexity_target_on_a_fixed_batch():
    from dualflow.data.synth import SynthManga

    torch.manual_seed(0)
    pages = [SynthManga(0)(i, 64) for i in range(4)]
    bw = torch.stack([torch.from_numpy(p.bw)[None] for p in pages])
    color = torch.stack([torch.from_numpy(p.color).permute(2, 0, 1) for p in pages])
    target = complexity_target(color, 8)
    net = AttentionNet(stride=8, dim=16, depth=2, heads=2, window=4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(bw), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_baseline_configs_match_dual_flow_parameter_count_within_10_percent():
    import yaml

    from tests.conftest import REPO

    def init_args(*files):
        args = {}
        for f in files:
            path = REPO / "experiments" / f
            if path.is_file():
                args.update((yaml.safe_load(path.read_text()).get("model") or {}).get("init_args") or {})
        return args

    def unet(args, in_channels, norm):
        keys = ("base", "depth", "attn_heads", "attn_depth", "window")
        kwargs = {k: args[k] for k in keys if k in args}
        return sum(p.numel() for p in UNet(in_channels, norm=args.get("norm", norm), **kwargs).parameters())

    for preset in ("", "presets/cpu/"):
        primary = init_args("stage2.yaml", f"{preset}stage2.yaml")
        secondary = init_args("stage3.yaml", f"{preset}stage3.yaml")
        baseline = init_args("baseline.yaml", f"{preset}baseline.yaml")
        dual = unet(primary, 2, "batch") + unet(secondary, 6, "group")
        assert abs(unet(baseline, 1, "group") / dual - 1) <= 0.10, preset
