"""Small tokenizers built locally that follow real models' conventions (nothing is downloaded).

Each is a byte-level BPE trained on ``CORPUS`` and wrapped in ``PreTrainedTokenizerFast``, so it
saves with ``save_pretrained`` and loads back with ``AutoTokenizer.from_pretrained``:

- ``gpt2_like``: only ``<|endoftext|>`` (BOS = EOS = UNK), no pad token, no BOS prepended, no
  chat template; ``gpt2_pad_eos`` is the same with pad = EOS, as ``load_tokenizer`` leaves it.
- ``llama_like``: ``<s>`` prepended on encode, ``</s>`` as EOS, no pad token.
- ``chatml_like``: ``<|im_start|>`` / ``<|im_end|>`` turns, ``<|im_end|>`` as EOS, a ChatML chat
  template and ``<|endoftext|>`` as pad (Qwen-instruct style).

``data_module`` runs rows through ``PreferenceDataModule`` with one of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from leash.config import DataConfig, DataSource
from leash.data.datamodule import PreferenceDataModule

CORPUS = """\
Human: Can you help me plan a small garden this spring?
Assistant: Of course. Start with a sunny spot, good soil and a few easy plants such as beans,
lettuce, tomatoes and herbs. Water them in the morning and keep the weeds away.
Human: What should I do if the leaves turn yellow?
Assistant: Yellow leaves often mean too much water or too little light. Check the soil first;
if it stays wet for days, water less often and make sure the pot can drain.
Human: Why is the sky blue during the day and red in the evening?
Assistant: Sunlight is scattered by the air, and blue light is scattered the most, so the sky
looks blue. In the evening the light travels through more air, the blue is scattered away and
the remaining light looks red and orange.
Human: Write a short poem about the sea.
Assistant: The sea is wide, the sea is deep, it sings the tired shore to sleep; it keeps the
moon, it keeps the rain, and brings the morning back again.
Human: I agree, that is a lovely answer. Tell me more about the moon.
Assistant: The moon is the only natural satellite of the earth. It has no light of its own; it
reflects the light of the sun, and its phases follow the angle between the sun, the earth and
the moon over about a month.
Human: Please explain how to make a cup of tea, step by step.
Assistant: Boil fresh water, warm the pot, add one spoon of tea for each cup, pour the water,
wait three to five minutes, then pour the tea and add milk or lemon if you like.
Human: Thank you, that is very helpful. Is there anything I should avoid?
Assistant: Avoid water that has boiled many times, and do not leave the tea too long, or it
becomes bitter. Keep the leaves in a dry, closed box away from strong smells.
Human: How do I say no politely when a friend asks for a favour I cannot do?
Assistant: Be brief and honest: thank them for asking, say that you cannot help this time, and
if you can, suggest another way or another day. A kind refusal keeps the friendship good.
The quick brown fox jumps over the lazy dog. Yes, no, maybe: because every question deserves a
clear and helpful answer, the assistant tries to be safe, honest and kind to the user.
"""
"""A few hundred words of chat-like text to train the BPE merges on."""

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML as Qwen and others write it: the prompt ends right after ``<|im_start|>assistant\\n``."""


def _byte_bpe(specials: Sequence[str], vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE trained on ``CORPUS``; ``specials`` get the first ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer)
    return tokenizer


def gpt2_like() -> PreTrainedTokenizerFast:
    """GPT-2's convention: ``<|endoftext|>`` is BOS, EOS and UNK; no pad, no BOS prepended."""
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe([end]), bos_token=end, eos_token=end, unk_token=end
    )


def gpt2_pad_eos() -> PreTrainedTokenizerFast:
    """``gpt2_like`` with pad = EOS, what ``leash.models.factory.load_tokenizer`` makes of it."""
    tokenizer = gpt2_like()
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def llama_like() -> PreTrainedTokenizerFast:
    """Llama's convention: ``<s>`` prepended on encode, ``</s>`` as EOS, no pad token."""
    bos, eos, unk = "<s>", "</s>", "<unk>"
    tokenizer = _byte_bpe([unk, bos, eos])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, unk_token=unk
    )


def chatml_like() -> PreTrainedTokenizerFast:
    """ChatML: ``<|im_end|>`` ends a turn and is EOS; pad ``<|endoftext|>``; no BOS."""
    pad, start, end = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe([pad, start, end]),
        eos_token=end,
        pad_token=pad,
        additional_special_tokens=[start],
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


ZOO = {
    "gpt2_like": gpt2_like,
    "gpt2_pad_eos": gpt2_pad_eos,
    "llama_like": llama_like,
    "chatml_like": chatml_like,
}
"""Every tokenizer of the zoo by name (for parametrised tests)."""


def data_module(
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Mapping[str, Any]],
    folder: Path,
    view: str = "pairs",
    seed: int = 0,
    **overrides: Any,
) -> PreferenceDataModule:
    """``rows`` written as a JSON-lines file in ``folder``, set up as a data module with
    ``tokenizer`` (a roomy token budget unless ``overrides`` set the config otherwise).

    The file is named by its content, so a new row set never meets a stale ``datasets`` cache.
    """
    text = "".join(json.dumps(row) + "\n" for row in rows)
    path = folder / f"rows-{hashlib.sha1(text.encode()).hexdigest()[:12]}.jsonl"
    path.write_text(text)
    settings = {"max_length": 512, "max_prompt_length": 384, "eval_fraction": 0.25, **overrides}
    cfg = DataConfig(name="zoo", source=DataSource.files, path=str(path), **settings)
    module = PreferenceDataModule(cfg, tokenizer, view=view, seed=seed)  # type: ignore[arg-type]
    module.setup()
    return module
