"""Adapters on the official `segment_anything` model (names `image_encoder.blocks.N.attn.qkv`)."""

from functools import partial

import torch
from torch import nn

from garasam.adapters import GaRAConfig, adapter_layers, adapter_state_dict, inject_adapters, save_adapters
from garasam.adapters.io import load_adapters
from tests.adapters.conftest import randomize_b
from tests.official_sam import ImageEncoderViT


class _OfficialWrapper(nn.Module):
    """Mimics `Sam`'s attribute name for the encoder so the default target regex applies."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = ImageEncoderViT(
            img_size=64,
            patch_size=16,
            embed_dim=32,
            depth=4,
            num_heads=2,
            mlp_ratio=4,
            out_chans=16,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=2,
            global_attn_indexes=(1, 3),
            qkv_bias=True,
        )


def test_gara_on_the_official_encoder(tmp_path) -> None:
    torch.manual_seed(0)
    model = _OfficialWrapper().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model.image_encoder(x)
    inject_adapters(model, GaRAConfig(r_low=4, r_high=8))
    assert list(adapter_layers(model)) == [f"image_encoder.blocks.{i}.attn.qkv" for i in range(4)]
    with torch.no_grad():
        assert torch.equal(model.image_encoder(x), before)
    randomize_b(model)
    with torch.no_grad():
        adapted = model.image_encoder(x)
    assert not torch.equal(adapted, before)

    save_adapters(model, tmp_path)  # stored under transformers' names, loadable by either model
    torch.manual_seed(0)
    other = load_adapters(_OfficialWrapper().eval(), tmp_path)
    with torch.no_grad():
        assert torch.equal(other.image_encoder(x), adapted)
    assert adapter_state_dict(other).keys() == adapter_state_dict(model).keys()
