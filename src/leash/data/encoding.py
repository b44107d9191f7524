"""Tokenisation, the exact prompt/response split, length budgets and the bad-row report.

Prompt and responses are tokenised separately, so the split is exact by construction:
``prompt_ids = tokenizer(prompt)`` (with its special tokens, e.g. a leading BOS; a rendered chat
prompt that already starts with the BOS text is encoded without adding another), and
``response_ids = tokenizer(response, add_special_tokens=False) + [eos]`` (no EOS for a response
whose ``ended`` flag is False: it was cut at a length limit).

Data text (every response, and every prompt but a rendered chat prompt) is tokenised with
``split_special_tokens=True``: a literal ``<|endoftext|>`` in it is text, never the special token,
so the only special tokens of a row are its BOS, the template's own and the EOS appended here.

Budgets: ``max_prompt_length`` tokens of prompt and ``max_length`` tokens of prompt + response.
``truncate_prompt_left`` keeps the prompt's last tokens (and its leading BOS, when it has one),
then cuts the right end of a response that is still over (a cut response has no EOS); ``drop``
turns an over-budget row into a bad row (``over_length``). A prompt that leaves no room for even
one response token is ``over_length`` under either policy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from leash.config import DataConfig, Truncation
from leash.data.formats import BadReason, NormalisedRow, PreferenceRow, RowScores, SFTRow


@dataclass(frozen=True)
class Budget:
    """Token budgets and the policy for rows over them."""

    max_length: int
    max_prompt_length: int
    truncation: Truncation

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Budget:
        """The budget a data config asks for."""
        return cls(cfg.max_length, cfg.max_prompt_length, cfg.truncation)


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt ready for generation; ``index`` is its position among its split's prompts."""

    index: int
    prompt: str
    prompt_ids: list[int]


@dataclass(frozen=True)
class EncodedSFT:
    """Prompt + one response, tokenised; ``index`` is the row's position in its split."""

    index: int
    source_index: int
    prompt: str
    prompt_ids: list[int]
    response_ids: list[int]


@dataclass(frozen=True)
class EncodedPair:
    """A tokenised preference pair; ``index`` is the row's position in its split.

    ``source_index`` is the row's position in the source split it was read from.
    """

    index: int
    source_index: int
    prompt: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    scores: RowScores

    def as_sft(self) -> EncodedSFT:
        """The prompt + chosen response as an SFT example (SFT on preference data)."""
        return EncodedSFT(
            self.index, self.source_index, self.prompt, self.prompt_ids, self.chosen_ids
        )


EncodedRow = EncodedPair | EncodedSFT


@dataclass(frozen=True)
class FittedRow:
    """A normalised row tokenised within the budget, not yet numbered in its split."""

    row: NormalisedRow
    prompt_ids: list[int]
    response_ids: list[list[int]]
    """One list per response (chosen, rejected; or the SFT response)."""

    @property
    def prompt(self) -> str:
        """The prompt text (what the eval hold-out groups rows by)."""
        return self.row.prompt


Item = tuple[int, NormalisedRow | BadReason]
"""A row of a split before encoding: (source row index, normalised row or reason)."""
FittedItem = tuple[int, FittedRow | BadReason]
"""A row of a split after encoding: (source row index, fitted row or reason)."""


# ------------------------------------------------------------------------------ bad rows
@dataclass
class SplitBadRows:
    """Rows read, kept and dropped (per reason) in one split."""

    split: str
    """`train` or `eval`."""
    source_split: str
    """The source split the rows were read from (eval may be carved out of train)."""
    rows_read: int = 0
    rows_kept: int = 0
    counts: Counter[BadReason] = field(default_factory=Counter)
    first_index: dict[BadReason, int] = field(default_factory=dict)
    """First offending row per reason, as an index in the source split."""

    def add(self, reason: BadReason, source_index: int) -> None:
        """Count one bad row."""
        self.counts[reason] += 1
        self.first_index[reason] = min(self.first_index.get(reason, source_index), source_index)

    @property
    def rows_dropped(self) -> int:
        """Rows read but not kept."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """Counts and first offending source row per reason, e.g. for an error message."""
        parts = [
            f"{reason.value}={count} (first: row {self.first_index[reason]} of "
            f"source split {self.source_split!r})"
            for reason, count in sorted(self.counts.items(), key=lambda item: item[0].value)
        ]
        return f"{self.split}: " + ", ".join(parts)


@dataclass
class BadRowReport:
    """Bad rows of every split, available as ``PreferenceDataModule.bad_rows`` after setup."""

    splits: list[SplitBadRows]

    def count(self, reason: BadReason, split: str | None = None) -> int:
        """Rows dropped for ``reason`` in ``split`` (all splits when None)."""
        return sum(s.counts[reason] for s in self.splits if split in (None, s.split))

    @property
    def total(self) -> int:
        """Rows dropped over all splits."""
        return sum(s.rows_dropped for s in self.splits)

    def summary(self) -> str:
        """One line: rows kept and dropped per split, with the reasons."""
        parts = []
        for s in self.splits:
            reasons = ", ".join(f"{r.value}={n}" for r, n in sorted(s.counts.items()))
            parts.append(
                f"{s.split}: kept {s.rows_kept}/{s.rows_read}, dropped {s.rows_dropped}"
                + (f" ({reasons})" if reasons else "")
            )
        return "; ".join(parts)

    def describe(self) -> str:
        """Counts and first offending row per reason for every split with bad rows."""
        return "\n".join(s.describe() for s in self.splits if s.rows_dropped)


# ------------------------------------------------------------------------------- encoding
class RowEncoder:
    """Tokenises normalised rows in batches and applies the budget."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, budget: Budget) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; responses must end with one")
        self.tokenizer = tokenizer
        self.budget = budget
        self.eos_id: int = tokenizer.eos_token_id
        self.bos_id: int | None = tokenizer.bos_token_id

    def encode_split(
        self, split: str, source_split: str, items: Sequence[Item]
    ) -> tuple[list[EncodedRow], SplitBadRows]:
        """``encode`` then ``collect_split`` in one call."""
        return collect_split(split, source_split, self.encode(items))

    def encode(self, items: Sequence[Item]) -> list[FittedItem]:
        """Tokenise the good rows of ``items`` (in batches) and fit each to the budget.

        Items keep their order; a row the budget rejects becomes its reason.
        """
        good = [row for _, row in items if not isinstance(row, BadReason)]
        prompts = self.tokenize_prompts(good)
        responses = self._tokenize_responses(good)
        fitted = iter(
            self._fitted(row, prompt_ids, response_ids)
            for row, prompt_ids, response_ids in zip(good, prompts, responses, strict=True)
        )
        return [(i, row if isinstance(row, BadReason) else next(fitted)) for i, row in items]

    def _fitted(
        self, row: NormalisedRow, prompt_ids: list[int], response_ids: list[list[int]]
    ) -> FittedRow | BadReason:
        fitted = self.fit(prompt_ids, response_ids)
        return fitted if isinstance(fitted, BadReason) else FittedRow(row, *fitted)

    def tokenize_prompts(self, rows: Sequence[NormalisedRow]) -> list[list[int]]:
        """The prompt ids of ``rows``, with the tokenizer's special tokens (e.g. a BOS)."""
        modes = [self._prompt_mode(row) for row in rows]
        encoded = {}
        for mode in set(modes):
            texts = [row.prompt for row, m in zip(rows, modes, strict=True) if m == mode]
            encoded[mode] = iter(self._tokenize(texts, *mode))
        return [next(encoded[mode]) for mode in modes]

    def _prompt_mode(self, row: NormalisedRow) -> tuple[bool, bool]:
        """(add special tokens, split special-token text) for a row's prompt.

        Data text is split; a rendered chat prompt keeps the template's special tokens, and gets
        no BOS added when the template already wrote one.
        """
        if not row.templated:
            return True, True
        bos_text = self.tokenizer.bos_token
        return not (bos_text and row.prompt.startswith(bos_text)), False

    def _tokenize_responses(self, rows: Sequence[NormalisedRow]) -> list[list[list[int]]]:
        """Per row, the ids of each response followed by EOS (unless it was cut)."""
        responses = [_responses(row) for row in rows]
        flat = iter(self._tokenize([text for pairs in responses for text, _ in pairs], False, True))
        return [
            [next(flat) + ([] if ended is False else [self.eos_id]) for _, ended in pairs]
            for pairs in responses
        ]

    def _tokenize(self, texts: Sequence[str], special: bool, split: bool) -> list[list[int]]:
        """Ids of ``texts``: ``special`` adds the tokenizer's special tokens, ``split`` reads
        special-token text as plain text."""
        if not texts:
            return []
        encoded = self.tokenizer(
            list(texts), add_special_tokens=special, split_special_tokens=split
        )
        return list(encoded["input_ids"])

    def fit(
        self, prompt_ids: list[int], responses: list[list[int]]
    ) -> tuple[list[int], list[list[int]]] | BadReason:
        """Apply the budget to one row: the (possibly truncated) ids, or ``over_length``.

        Also ``identical_responses`` when truncation made two responses equal.
        """
        budget = self.budget
        longest = max(len(ids) for ids in responses)
        over = len(prompt_ids) > budget.max_prompt_length
        over = over or len(prompt_ids) + longest > budget.max_length
        if over and budget.truncation == Truncation.drop:
            return BadReason.over_length
        if len(prompt_ids) > budget.max_prompt_length:
            prompt_ids = self._cut_prompt(prompt_ids)
        room = budget.max_length - len(prompt_ids)
        if room < 1:
            return BadReason.over_length
        responses = [ids[:room] for ids in responses]
        if len(responses) == 2 and responses[0] == responses[1]:
            return BadReason.identical_responses
        return prompt_ids, responses

    def _cut_prompt(self, prompt_ids: list[int]) -> list[int]:
        """The prompt's last ``max_prompt_length`` tokens, keeping a leading BOS."""
        keep = self.budget.max_prompt_length
        if self.bos_id is not None and prompt_ids[0] == self.bos_id and keep > 1:
            return [self.bos_id, *prompt_ids[len(prompt_ids) - keep + 1 :]]
        return prompt_ids[len(prompt_ids) - keep :]


def collect_split(
    split: str, source_split: str, items: Sequence[FittedItem]
) -> tuple[list[EncodedRow], SplitBadRows]:
    """The kept rows of a split and its bad-row counts.

    Kept rows are numbered 0..n-1 in order: that number is their ``index``.
    """
    report = SplitBadRows(split, source_split, rows_read=len(items))
    kept: list[EncodedRow] = []
    for source_index, item in items:
        if isinstance(item, BadReason):
            report.add(item, source_index)
        else:
            kept.append(_encoded(len(kept), source_index, item))
    report.rows_kept = len(kept)
    return kept, report


def unique_prompts(rows: Sequence[EncodedRow]) -> list[EncodedPrompt]:
    """The distinct prompts of ``rows`` (by text) in order of first occurrence."""
    seen: dict[str, EncodedPrompt] = {}
    for row in rows:
        if row.prompt not in seen:
            seen[row.prompt] = EncodedPrompt(len(seen), row.prompt, row.prompt_ids)
    return list(seen.values())


def _responses(row: NormalisedRow) -> list[tuple[str, bool | None]]:
    """(text, ended flag) of each response of a row."""
    if isinstance(row, PreferenceRow):
        return [(row.chosen, row.chosen_ended), (row.rejected, row.rejected_ended)]
    return [(row.response, row.ended)]


def _encoded(index: int, source_index: int, fitted: FittedRow) -> EncodedRow:
    row, prompt_ids, responses = fitted.row, fitted.prompt_ids, fitted.response_ids
    if isinstance(row, SFTRow):
        return EncodedSFT(index, source_index, row.prompt, prompt_ids, responses[0])
    return EncodedPair(
        index, source_index, row.prompt, prompt_ids, responses[0], responses[1], row.scores
    )
