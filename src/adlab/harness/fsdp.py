"""FSDP helpers referenced from `configs/trainer/fsdp.yaml`."""

from __future__ import annotations


def transformer_block_policy() -> set[type]:
    """The module classes FSDP wraps one unit each: the GPT-2 style decoder blocks adlab builds."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    return {GPT2Block}
