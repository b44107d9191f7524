"""The FLOPs of a trained token, worked out by hand."""

from __future__ import annotations

from leash.callbacks.resources import decoder_training_flops


def test_gpt2_small_at_1024_tokens():
    # 124,439,808 parameters: 6N = 746,638,848; attention 12 x 12 x 768 x 1024 = 113,246,208.
    assert decoder_training_flops(124_439_808, 12, 768, 1024) == 859_885_056


def test_the_attention_term_grows_with_the_context_only():
    short = decoder_training_flops(1000, 2, 64, 8)  # 6000 + 12 x 2 x 64 x 8 = 6000 + 12,288
    assert short == 18_288
    assert decoder_training_flops(1000, 2, 64, 16) - short == 12_288
    assert decoder_training_flops(2000, 2, 64, 8) - short == 6000
