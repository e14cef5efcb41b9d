"""Whether bf16 autocast pays on a device, so ``bf16=auto`` can choose it only where it is native.

bf16 halves the bytes a matmul moves, but only hardware with bf16 arithmetic turns that into
speed: CUDA GPUs from Ampere on, and CPUs whose oneDNN build has a bf16 path (AVX-512 cores, AMX).
On an AVX2-only CPU every bf16 product is converted to fp32 and back; we measured the demo's
training step 20x slower there (4.3 s vs 0.21 s on a 2-core AMD EPYC without AVX-512).
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """True where ``device`` computes in bf16 natively (then autocast speeds training up)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """The bf16 flag a run trains with: ``auto`` becomes :func:`native_bf16`; true / false stay."""
    return native_bf16(device) if setting == "auto" else bool(setting)
