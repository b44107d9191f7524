"""Tokenizers built locally, so that the tiny preset never downloads anything.

Both are real ``PreTrainedTokenizerFast`` objects: they are saved with ``save_pretrained`` and
loaded back with ``AutoTokenizer.from_pretrained``, exactly like a hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# A minimal chat template: one line per turn, the role in brackets. Rendered prompts end with the
# assistant marker, so the response is exactly what the model writes after it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "[{{ message['role'] }}] {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Add specials, prepend BOS on encode (as Llama's tokenizer does), attach the chat template."""
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: every UTF-8 byte is one token, so it encodes any text losslessly.

    Encoding prepends BOS; encode responses with ``add_special_tokens=False``.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return _wrap(tokenizer)


def build_word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over a closed vocabulary: one word is one token.

    The built-in tasks use it so that a response of k words is exactly k tokens, which is what
    lets the exact oracle enumerate responses token by token.
    """
    if len(set(words)) != len(words):
        raise ValueError("vocabulary words must be unique")
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return _wrap(tokenizer)
