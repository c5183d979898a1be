"""Tensor kernels below every model: the fused adapter GEMM (`fused`) and the Triton rank update
(`rank_kernel`). They import no other garasam package, so the adapter layers can call them."""
