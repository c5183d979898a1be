"""The fast path above the adapters: SAM's encoder in bf16 with fused adapters, folded relative
positions and CUDA graphs (`encoder`, `cuda_graphs`)."""
