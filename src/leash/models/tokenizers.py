"""Tokenizers built locally, so that the tiny preset never downloads anything.

All are real ``PreTrainedTokenizerFast`` objects: they are saved with ``save_pretrained`` and
loaded back with ``AutoTokenizer.from_pretrained``, exactly like a hub tokenizer. The byte and
word tokenizers use leash's own specials (BOS prepended, a pad token, a chat template); the BPE
tokenizer trained on a data set's text follows GPT-2's conventions instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
END_OF_TEXT = "<|endoftext|>"
"""GPT-2's only special token: BOS, EOS and UNK at once."""
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


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of ``vocab_size`` tokens trained on ``texts``, with GPT-2's conventions.

    As GPT-2's tokenizer: the GPT-2 pre-tokenizer regex without a prefix space, every byte in the
    base alphabet (any text encodes losslessly), ``<|endoftext|>`` as the only special token (it
    is BOS, EOS and UNK), no pad token, nothing prepended on encode, no chat template. Training is
    deterministic for the same texts in the same order.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        clean_up_tokenization_spaces=False,
    )
