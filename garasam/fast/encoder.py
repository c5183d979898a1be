"""A fast path for SAM's image encoder (transformers' `SamModel`), adapters included.

`optimize_sam(model)` converts a model in place; the result computes the same function as the
reference path (checked in tests/models/test_fast.py) and keeps every parameter name, so adapter
save/load, `gate_summary` and checkpoints work unchanged. What it does:

- **bf16 weights and activations** for the frozen image encoder. Layer norms and the attention
  softmax accumulate in float32 inside their kernels; the gate MLPs and any trainable parameter
  (adapters under training: float32 master weights) keep their dtype; the prompt encoder and mask
  decoder stay as they are, and the encoder returns embeddings in the decoder's dtype, so callers
  see no dtype change.
- **Fused attention with relative positions.** transformers' SDPA path materialises the
  decomposed rel-pos bias as a `[B, heads, L, L]` tensor (4.3 GB per global block for ViT-H at
  batch 8 in bf16) and so runs the slower attention kernel that accepts a bias. Here the bias is
  folded into extra query/key channels (`attention="fold"`): queries get `[q * scale, rel_h,
  rel_w]`, keys `[k, onehot(key row), onehot(key column)]`, so `q'.k'` is exactly the biased score
  and a bias-free flash kernel does the rest (at the cost of a wider head). `attention="flex"`
  adds the bias inside `flex_attention` through a `score_mod` (compiled kernels only);
  `attention="bias"` materialises the bias and runs SDPA's kernel for biased attention. The
  default, "auto", picks per block what measured fastest (H200, ViT-H shapes at batch 8, bf16,
  `benchmarks/encoder.py --attention-bench`): "fold" for global blocks (3.9 ms against 8.8 for
  "bias" and 27 for compiled "flex") and "bias" for windowed blocks, whose `[L, L]` bias is only
  196 x 196 (0.73 ms against 1.3-1.5 for "fold" and 2.2 for compiled "flex").
- **Fused adapters** (`garasam.kernels.fused`): `[W0; A]` as one GEMM, unselected rank spaces
  masked instead of gathered, so the forward never synchronises with the device and shapes never
  depend on the gates. Training uses the same kernel; its backward skips the frozen weight.
- Optional **rank kernel** (`rank_kernel=True`, `garasam.kernels.rank_kernel`): at inference a
  Triton kernel adds the adapters' update in place and skips the components no row switched on.
- **CUDA graphs**: `cuda_graphs="capture"` (`garasam.fast.cuda_graphs`) captures the encoder for an
  input shape once that shape repeats and replays it (inference; what prediction uses on CUDA);
  `cuda_graphs="compile"` compiles the whole encoder with mode "reduce-overhead" instead.
- Optional **torch.compile**: per block (regional compilation: one graph per block kind, so
  compiling ViT-H costs about what compiling one block does).

Inject or load adapters before calling `optimize_sam`: adapters added later run their reference
path. The fast encoder does not return hidden states or attention maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from transformers import SamModel
from transformers.models.sam.modeling_sam import (
    SamVisionAttention,
    SamVisionEncoder,
    SamVisionEncoderOutput,
    SamVisionLayer,
)
from transformers.models.sam_hq.modeling_sam_hq import (
    SamHQVisionAttention,
    SamHQVisionEncoder,
    SamHQVisionEncoderOutput,
    SamHQVisionLayer,
)

from garasam.adapters.layers import AdapterLinear
from garasam.errors import ConfigError
from garasam.fast.cuda_graphs import EncoderGraphs
from garasam.kernels import rank_kernel as rank_kernels

AttentionKind = Literal["auto", "fold", "bias", "flex"]
ATTENTION_KINDS = ("fold", "bias", "flex")
GraphMode = Literal[False, "capture", "compile"]


def optimize_sam(
    model: SamModel,
    *,
    dtype: torch.dtype = torch.bfloat16,
    compile: bool | str = False,
    cuda_graphs: GraphMode = False,
    attention: AttentionKind = "auto",
    rank_kernel: bool = False,
) -> SamModel:
    """Switch `model`'s image encoder to the fast path, in place, and return the model.

    `dtype`: weights and activations of the frozen encoder (float32 keeps full precision and only
    changes kernels); trainable adapter weights and the gates keep theirs. `compile`: True, or a
    `torch.compile` mode string, compiles each encoder block. `cuda_graphs`: "capture" replays a
    CUDA graph per repeated input shape at inference (`garasam.fast.cuda_graphs`); "compile"
    compiles the whole encoder with mode "reduce-overhead" instead of per block.
    `attention`: "fold", "bias", "flex" (compiled only) for every block, or "auto": "fold" for
    global blocks and "bias" for windowed ones (see the module docstring for the measurements).
    `rank_kernel`: the adapters' update at inference through `garasam.kernels.rank_kernel`
    (Triton; CUDA, or Triton's CPU interpreter).
    """
    encoder = model.vision_encoder
    if isinstance(encoder, FastSamVisionEncoder):
        raise ConfigError(
            "optimize_sam: this model is already optimised; build a fresh model to change options"
        )
    if not isinstance(encoder, SamVisionEncoder | SamHQVisionEncoder):
        raise ConfigError(f"optimize_sam expects a transformers SAM, got {type(model).__name__}")
    wrong = [
        type(layer).__name__
        for layer in encoder.layers
        if not isinstance(layer, SamVisionLayer | SamHQVisionLayer)
    ]
    wrong += [
        type(layer.attn).__name__
        for layer in encoder.layers
        if not isinstance(layer.attn, SamVisionAttention | SamHQVisionAttention)
    ]
    if wrong:
        raise ConfigError(f"optimize_sam: unexpected encoder blocks {sorted(set(wrong))}")
    if attention not in ("auto", *ATTENTION_KINDS):
        raise ConfigError(f"optimize_sam: attention must be auto, fold, bias or flex; got {attention!r}")
    if not dtype.is_floating_point:
        raise ConfigError(f"optimize_sam: dtype must be a floating-point dtype, got {dtype}")
    if cuda_graphs is not False and cuda_graphs not in ("capture", "compile"):
        raise ConfigError(
            f"optimize_sam: cuda_graphs must be False, 'capture' or 'compile'; got {cuda_graphs!r}"
        )
    if not isinstance(rank_kernel, bool):
        raise ConfigError(f"optimize_sam: rank_kernel must be True or False, got {rank_kernel!r}")
    device = encoder.patch_embed.projection.weight.device
    if rank_kernel and not rank_kernels.available(device):
        raise ConfigError(
            f"optimize_sam: rank_kernel=True needs Triton and a CUDA device (or TRITON_INTERPRET=1 on a CPU); "
            f"the model is on {device}"
        )
    compiling = bool(compile) or cuda_graphs == "compile"
    if attention == "flex" and not compiling:
        raise ConfigError("optimize_sam: attention='flex' is only fast when compiled; pass compile=True")

    # HQ-SAM's and RobustSAM's decoders also read the first global block's output
    encoder.early_block = (
        next(i for i, layer in enumerate(encoder.layers) if layer.window_size == 0)
        if isinstance(encoder, SamHQVisionEncoder)
        else None
    )
    _convert_encoder(encoder, dtype)
    for layer in encoder.layers:
        # Swapping the class (as torch.nn.utils.parametrize does) keeps the modules, their
        # parameter names and hooks; only `forward` changes.
        layer.__class__ = FastSamVisionLayer
        layer.attn.__class__ = FastSamVisionAttention
        layer.attn.attention = attention if attention != "auto" else auto_attention(layer)
    encoder.__class__ = FastSamVisionEncoder
    encoder.output_dtype = next(model.mask_decoder.parameters()).dtype
    encoder.clone_output = cuda_graphs == "compile"
    for module in encoder.modules():
        if isinstance(module, AdapterLinear):
            module.fused = True
            module.rank_kernel = rank_kernel
    encoder.graphs = EncoderGraphs(encoder) if cuda_graphs == "capture" else None

    # Static shapes: block kinds differ in shape (windows vs whole images), and dynamo's automatic
    # dynamic shapes would otherwise recompile the second kind with symbolic sizes.
    if cuda_graphs == "compile":
        encoder.encode = torch.compile(encoder.encode, mode="reduce-overhead", dynamic=False)
    elif compile:
        mode = compile if isinstance(compile, str) else None
        for layer in encoder.layers:
            layer.compile(mode=mode, dynamic=False)
    return model


def accelerate(
    model: nn.Module,
    fast: bool | None,
    *,
    dtype: torch.dtype = torch.bfloat16,
    cuda_graphs: GraphMode = False,
) -> bool:
    """`optimize_sam` where it applies, the one switch rule: `fast` None means on when the model is on
    CUDA; SAM 2.1 keeps transformers' encoder (`supports_fast_path`). Returns whether the model changed."""
    device = next(model.parameters()).device
    if not (fast if fast is not None else device.type == "cuda") or not supports_fast_path(model):
        return False
    optimize_sam(model, dtype=dtype, cuda_graphs=cuda_graphs)
    return True


def optimize_for_prediction(model: nn.Module, fast: bool | None = None) -> bool:
    """The fast path as prediction uses it (the predictor, `garasam predict`, the web page): bf16,
    fused adapters and a CUDA graph per repeated input shape."""
    return accelerate(model, fast, cuda_graphs="capture")


def supports_fast_path(model: nn.Module) -> bool:
    """Whether `optimize_sam` applies: SAM 1's ViT encoders (SAM, HQ-SAM, RobustSAM). SAM 2.1 runs
    transformers' Hiera encoder as it is (SDPA attention; bf16 through autocast)."""
    return isinstance(getattr(model, "vision_encoder", None), SamVisionEncoder | SamHQVisionEncoder)


def auto_attention(layer: SamVisionLayer) -> str:
    """The attention kernel "auto" gives a block: "bias" for windowed blocks, "fold" for global ones."""
    return "bias" if layer.window_size > 0 else "fold"


def attention_kinds(model: SamModel) -> str:
    """A short description of the kernels an optimised encoder uses, e.g. "window bias, global fold"."""
    kinds: dict[str, set[str]] = {}
    for layer in model.vision_encoder.layers:
        kinds.setdefault("window" if layer.window_size > 0 else "global", set()).add(
            getattr(layer.attn, "attention", "reference")
        )
    return ", ".join(f"{block} {'/'.join(sorted(names))}" for block, names in kinds.items())


def _convert_encoder(encoder: nn.Module, dtype: torch.dtype) -> None:
    """Cast the encoder's parameters to `dtype`, except the gates and trainable adapter weights.

    Gates stay in their (float32) dtype so that a hard decision near its threshold is taken as in
    full precision; adapter weights being trained are the optimiser's master weights and are cast
    per forward. Everything else is the frozen backbone (full fine-tuning is not a use case here).
    """
    keep = set()
    for module in encoder.modules():
        if isinstance(module, AdapterLinear):
            keep.update(id(p) for p in module.gate_parameters())
            keep.update(id(p) for p in (module.lora_A, module.lora_B) if p.requires_grad)
    with torch.no_grad():
        for param in encoder.parameters():
            if id(param) not in keep and param.is_floating_point():
                param.data = param.data.to(dtype)


class FastSamVisionEncoder(SamVisionEncoder):
    """SamVisionEncoder whose forward runs the fast blocks and casts at its two ends."""

    output_dtype: torch.dtype
    clone_output: bool
    early_block: int | None
    graphs: EncoderGraphs | None

    def forward(  # type: ignore[override]
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> SamVisionEncoderOutput | SamHQVisionEncoderOutput:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        if output_attentions or output_hidden_states:
            raise ValueError(
                "the fast SAM encoder (garasam.fast.encoder) returns neither attentions nor hidden states; "
                "use a model without optimize_sam for them"
            )
        if self.graphs is not None:
            embeddings, early = self.graphs(self, pixel_values)
        else:
            embeddings, early = self.encode(pixel_values)
        # CUDA-graph outputs are overwritten by the next replay: one copy out, which is also the cast
        copy = self.clone_output or self.graphs is not None
        embeddings = embeddings.to(self.output_dtype, copy=copy)
        if early is None:
            return SamVisionEncoderOutput(last_hidden_state=embeddings)
        return SamHQVisionEncoderOutput(
            last_hidden_state=embeddings, intermediate_embeddings=[early.to(self.output_dtype, copy=copy)]
        )

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch embedding, blocks and neck in the encoder's dtype; the region CUDA graphs capture.
        Returns the embeddings and the first global block's output (None unless `early_block` is set)."""
        hidden = self.patch_embed(pixel_values.to(self.patch_embed.projection.weight.dtype))
        if self.pos_embed is not None:
            hidden = hidden + self.pos_embed
        early = None
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if index == self.early_block:
                early = hidden
        return self.neck(hidden), early


class FastSamVisionLayer(SamVisionLayer):
    """A SAM block whose attention is FastSamVisionAttention; returns the hidden states only."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        shortcut = hidden_states
        hidden_states = self.layer_norm1(hidden_states)
        if self.window_size > 0:
            windows, padded = window_partition(hidden_states, self.window_size)
            hidden_states = window_unpartition(
                self.attn(windows), self.window_size, padded, shortcut.shape[1:3]
            )
        else:
            hidden_states = self.attn(hidden_states)
        hidden_states = shortcut + hidden_states
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


def window_partition(hidden_states: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """`[B, H, W, C]` -> `[B * windows, size, size, C]`, zero-padding H and W up to multiples of `size`."""
    batch, height, width, channels = hidden_states.shape
    pad_h, pad_w = -height % size, -width % size
    if pad_h or pad_w:
        hidden_states = F.pad(hidden_states, (0, 0, 0, pad_w, 0, pad_h))
    rows, cols = (height + pad_h) // size, (width + pad_w) // size
    windows = hidden_states.view(batch, rows, size, cols, size, channels).transpose(2, 3)
    return windows.reshape(-1, size, size, channels), (height + pad_h, width + pad_w)


def window_unpartition(
    windows: torch.Tensor, size: int, padded: tuple[int, int], original: tuple[int, int] | torch.Size
) -> torch.Tensor:
    """Inverse of `window_partition`: reassemble the windows and drop the padding."""
    (padded_h, padded_w), (height, width) = padded, original
    rows, cols = padded_h // size, padded_w // size
    batch = windows.shape[0] // (rows * cols)
    hidden_states = windows.view(batch, rows, cols, size, size, -1).transpose(2, 3)
    hidden_states = hidden_states.reshape(batch, padded_h, padded_w, -1)
    if padded_h != height or padded_w != width:
        hidden_states = hidden_states[:, :height, :width]
    return hidden_states.contiguous()


class FastSamVisionAttention(SamVisionAttention):
    """Multi-head attention with decomposed relative positions, without an `[L, L]` bias tensor."""

    attention: str

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, height, width, _ = hidden_states.shape
        heads = self.num_attention_heads
        qkv = self.qkv(hidden_states).view(n, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)  # [n, heads, L, head_dim]
        if self.use_rel_pos:
            rel_h, rel_w = decomposed_rel_pos(query, self.rel_pos_h, self.rel_pos_w, height, width)
            out = ATTENTION[self.attention](query, key, value, rel_h, rel_w, self.scale)
        else:
            out = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        out = out.transpose(1, 2).reshape(n, height, width, -1)
        return self.proj(out)


def decomposed_rel_pos(
    query: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's (MViTv2's) decomposed relative positions as two small score terms.

    The score of query (i, j) for key (k, l) gets `rel_h[..., ij, k] + rel_w[..., ij, l]` with
    `rel_h = q_ij . Rh[i - k]`, `rel_w = q_ij . Rw[j - l]` (unscaled query, as in SAM).
    `query` is `[n, heads, height * width, d]`; returns `[n, heads, L, height]`, `[n, heads, L, width]`.
    """
    n, heads, _, dim = query.shape
    table_h = _relative_table(rel_pos_h, height).to(query.dtype)
    table_w = _relative_table(rel_pos_w, width).to(query.dtype)
    grid = query.reshape(n, heads, height, width, dim)
    rel_h = torch.einsum("nmhwc,hkc->nmhwk", grid, table_h)
    rel_w = torch.einsum("nmhwc,wkc->nmhwk", grid, table_w)
    return rel_h.reshape(n, heads, height * width, height), rel_w.reshape(n, heads, height * width, width)


def _relative_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """`table[i, k] = rel_pos[i - k + size - 1]`, shape `[size, size, d]`."""
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(f"relative position table of length {rel_pos.shape[0]} does not fit {size} tokens")
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


AttentionFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor
]


def fold_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Attention with the rel-pos bias folded into extra query/key channels (see module docstring).

    Heads are widened to `d + height + width` rounded up to 8 (value zero-padded to match, so the
    flash kernels, which need equal head sizes, apply); no `[L, L]` tensor is ever formed.
    """
    dim = query.shape[-1]
    length, height, width = query.shape[-2], rel_h.shape[-1], rel_w.shape[-1]
    wide = -(-(dim + height + width) // 8) * 8
    pad = wide - dim - height - width
    positions = torch.arange(length, device=query.device)
    key_pos = torch.cat(
        [
            (positions[:, None] // width == torch.arange(height, device=query.device)).to(key.dtype),
            (positions[:, None] % width == torch.arange(width, device=query.device)).to(key.dtype),
        ],
        dim=-1,
    )
    key_pos = F.pad(key_pos, (0, pad)).expand(*key.shape[:-1], -1)
    query = torch.cat([query * scale, rel_h, rel_w, rel_w.new_zeros(*rel_w.shape[:-1], pad)], dim=-1)
    key = torch.cat([key, key_pos], dim=-1)
    value = F.pad(value, (0, wide - dim))
    return F.scaled_dot_product_attention(query, key, value, scale=1.0)[..., :dim]


def bias_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """The reference: materialise the `[n, heads, L, L]` bias and pass it to SDPA as a mask."""
    n, heads, length = query.shape[:3]
    bias = (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).view(n, heads, length, length)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)


def flex_rel_pos_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """flex_attention with the rel-pos terms added in a `score_mod`: reads `[L, h + w]`, not `[L, L]`.

    Fast only inside a compiled region, where inductor lowers it into one fused kernel; called
    eagerly, flex_attention materialises the scores (fine for checking numbers on a CPU).
    """
    from torch.nn.attention.flex_attention import flex_attention

    width = rel_w.shape[-1]

    def score_mod(score, b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex_attention's signature
        return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]

    return flex_attention(
        query.contiguous(), key.contiguous(), value.contiguous(), score_mod=score_mod, scale=scale
    )


ATTENTION: dict[str, AttentionFn] = {
    "fold": fold_attention,
    "bias": bias_attention,
    "flex": flex_rel_pos_attention,
}
