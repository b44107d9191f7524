"""Row formats: turn one raw row of any accepted format into a normalised text row.

Accepted formats (``DataConfig.format``; ``auto`` detects from the columns and the first row):

- **explicit**: ``prompt``, ``chosen``, ``rejected`` strings; the responses exclude the prompt.
- **implicit** (HH-RLHF): ``chosen`` / ``rejected`` full texts sharing a prefix. The split point
  is the longest common prefix backed off to a turn boundary: the end of the last
  ``"\\n\\nAssistant:"`` marker inside the common prefix. The prompt ends with that marker; the
  responses are the rest of each text, which must hold no further turn marker (texts that
  diverge in an earlier turn are ``diverges_before_last_turn``).
- **conversational**: lists of ``{role, content}`` messages (roles ``system``, ``user`` and
  ``assistant``; any other is ``unknown_role``), either explicit (``prompt`` messages,
  ``chosen`` / ``rejected`` holding one assistant message) or whole conversations that share
  every message but the last, which is the assistant's answer (otherwise
  ``diverges_before_last_turn``). A ``prompt`` beside whole conversations that is not a list of
  messages (``ultrafeedback_binarized`` repeats the last user turn there as a string) is not
  read: the conversations hold the prompt.
- **SFT corpus**: ``prompt`` + ``response`` (strings or messages). A source with a ``response``
  column and no ``chosen`` column is an SFT corpus whatever ``format`` says (``format`` describes
  preference rows).

Chat-template convention: the prompt text is
``apply_chat_template(prompt_messages, add_generation_prompt=True, tokenize=False)`` and the
response text is the assistant message's ``content``. Every row is checked: the rendering of the
full conversation must start with prompt text + content, otherwise the row is ``unparseable``.
Whatever the template writes after the content (its end-of-turn text) is *not* part of the
response: the encoder appends the tokenizer's EOS instead, which is what a policy emits to stop.

Special-token text in data (a literal ``<|endoftext|>`` in a prompt or response) is plain text:
the encoder tokenises data text so that it never becomes a special token. A rendered chat prompt
is the exception (``templated``): its special-token text is the template's own and must stay
special, so a prompt message whose content holds special-token text cannot be encoded
faithfully and is ``special_token_text``.

End of response: the encoder appends EOS to every response, except where an ``ended`` column
(``chosen_ended`` / ``rejected_ended``, or ``ended`` in an SFT corpus) is False: such a response
was cut at a length limit and must not get one. Where that column is True, an empty text is a
legitimate answer (EOS alone), as the built-in tasks can produce; elsewhere it is
``empty_response``.

Defects found here (missing field, unparseable, empty text, identical responses) come back as a
:class:`BadReason` instead of a row; token-level defects are the encoder's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from transformers import PreTrainedTokenizerBase

from leash.config import RowFormat

ASSISTANT_MARKER = "\n\nAssistant:"
"""HH-RLHF turn marker: an implicit prompt ends right after the last one it shares."""

TURN_MARKERS = ("\n\nHuman:", ASSISTANT_MARKER)
"""HH-RLHF turn markers: a response that holds one is not the final turn alone."""

ROLES = frozenset({"system", "user", "assistant"})
"""The chat roles a conversational row may use."""


class BadReason(str, Enum):
    """Why a row was not kept; every dropped row has exactly one."""

    missing_field = "missing_field"
    unparseable = "unparseable"
    empty_prompt = "empty_prompt"
    empty_response = "empty_response"
    identical_responses = "identical_responses"
    over_length = "over_length"
    diverges_before_last_turn = "diverges_before_last_turn"
    """chosen and rejected differ before the final assistant turn: not one prompt, two answers."""
    unknown_role = "unknown_role"
    """A chat message whose role is not one of ``ROLES``."""
    special_token_text = "special_token_text"
    """A chat prompt message holds the text of a special token (see the module docstring)."""
    not_text = "not_text"
    """A prompt or response that is neither text nor messages (a number, say)."""
    malformed_json = "malformed_json"
    """A line (or list entry) of a JSON data file that is not one JSON object."""
    not_utf8 = "not_utf8"
    """A line of a JSON-lines data file whose bytes are not UTF-8 text."""


class RowKind(str, Enum):
    """The resolved format of a source's rows (``auto`` already decided)."""

    explicit = "explicit"
    implicit = "implicit"
    conversational = "conversational"
    sft = "sft"


class RowScores(NamedTuple):
    """Optional per-row numbers carried from same-named columns into ``PreferenceBatch``."""

    chosen_gold_reward: float | None = None
    rejected_gold_reward: float | None = None
    reference_chosen_logps: float | None = None
    reference_rejected_logps: float | None = None


CARRIED_COLUMNS: tuple[str, ...] = RowScores._fields
"""Extra columns read when present (gold rewards of built-in tasks, stored reference log-probs)."""

ENDED_COLUMNS = ("chosen_ended", "rejected_ended", "ended")
"""Optional booleans: did the response end with EOS (False: cut at a limit, no EOS appended)."""


@dataclass(frozen=True)
class PreferenceRow:
    """A normalised preference pair: prompt text and the two response texts that follow it."""

    prompt: str
    chosen: str
    rejected: str
    scores: RowScores = RowScores()
    chosen_ended: bool | None = None
    """False: the response was cut and gets no EOS; None: no such column (EOS appended)."""
    rejected_ended: bool | None = None
    templated: bool = False
    """True: the prompt is chat-template output, whose special-token text is the template's."""


@dataclass(frozen=True)
class SFTRow:
    """A normalised SFT example: prompt text and the response text that follows it."""

    prompt: str
    response: str
    ended: bool | None = None
    """False: the response was cut and gets no EOS; None: no such column (EOS appended)."""
    templated: bool = False
    """True: the prompt is chat-template output, whose special-token text is the template's."""


NormalisedRow = PreferenceRow | SFTRow


# ------------------------------------------------------------------------------ detection
def resolve_kind(fmt: RowFormat, columns: Sequence[str], first_row: Mapping[str, Any]) -> RowKind:
    """The format of a source, from the configured format, its columns and its first row.

    Raises ValueError when ``auto`` cannot tell (the message names the columns it saw).
    """
    if "response" in columns and "chosen" not in columns:
        return RowKind.sft
    if fmt != RowFormat.auto:
        return RowKind(fmt.value)
    if "chosen" not in columns or "rejected" not in columns:
        raise ValueError(
            f"cannot detect the row format from columns {sorted(columns)}: expected "
            "prompt/chosen/rejected, chosen/rejected (implicit prompt) or prompt/response (SFT)"
        )
    if isinstance(first_row.get("chosen"), list):
        return RowKind.conversational
    return RowKind.explicit if "prompt" in columns else RowKind.implicit


# ----------------------------------------------------------------------------- normalising
def normalise(
    raw: Mapping[str, Any], kind: RowKind, tokenizer: PreTrainedTokenizerBase
) -> NormalisedRow | BadReason:
    """One raw row as a normalised row, or the reason it cannot be one.

    The tokenizer is only used for its chat template (conversational rows).
    """
    if kind == RowKind.sft:
        return _sft_row(raw, tokenizer)
    fields = (
        ("prompt", "chosen", "rejected") if kind == RowKind.explicit else ("chosen", "rejected")
    )
    if any(raw.get(name) is None for name in fields):
        return BadReason.missing_field
    scores, ended = _scores(raw), _ended(raw, "chosen_ended", "rejected_ended")
    if scores is None or ended is None:
        return BadReason.unparseable
    if kind == RowKind.explicit:
        parts = _strings(raw["prompt"], raw["chosen"], raw["rejected"])
    elif kind == RowKind.implicit:
        parts = _strings(raw["chosen"], raw["rejected"])
        parts = split_implicit(*parts) if isinstance(parts, tuple) else parts
    else:
        parts = _conversational_pair(raw, tokenizer)
    if isinstance(parts, BadReason):
        return parts
    prompt, chosen, rejected = parts
    problem = check_texts(prompt, (chosen, rejected), ended)
    if problem is not None:
        return problem
    templated = kind == RowKind.conversational
    return PreferenceRow(prompt, chosen, rejected, scores, *ended, templated=templated)


def split_implicit(chosen: str, rejected: str) -> tuple[str, str, str] | BadReason:
    """Split two full texts into (prompt, chosen response, rejected response).

    The prompt is the longest common prefix backed off to the end of the last ``ASSISTANT_MARKER``
    that lies wholly inside it; ``unparseable`` when the common prefix holds no marker, and
    ``diverges_before_last_turn`` when a response still holds a turn marker.
    """
    common = 0
    for left, right in zip(chosen, rejected, strict=False):
        if left != right:
            break
        common += 1
    start = chosen.rfind(ASSISTANT_MARKER, 0, common)
    if start < 0:
        return BadReason.unparseable
    end = start + len(ASSISTANT_MARKER)
    responses = chosen[end:], rejected[end:]
    if any(marker in text for text in responses for marker in TURN_MARKERS):
        return BadReason.diverges_before_last_turn
    return chosen[:end], *responses


def check_texts(
    prompt: str, responses: Sequence[str], ended: Sequence[bool | None]
) -> BadReason | None:
    """Text-level checks: empty (or blank) prompt, empty response, identical responses.

    ``ended[i]`` is the response's ended flag: a blank response that ended is EOS alone, not
    empty; two responses are identical when both text and flag agree.
    """
    if not prompt.strip():
        return BadReason.empty_prompt
    if any(
        not text.strip() and stop is not True for text, stop in zip(responses, ended, strict=True)
    ):
        return BadReason.empty_response
    if len(responses) == 2 and (responses[0], ended[0]) == (responses[1], ended[1]):
        return BadReason.identical_responses
    return None


def _strings(*values: Any) -> tuple[str, ...] | BadReason:
    if all(isinstance(value, str) for value in values):
        return tuple(values)
    return BadReason.not_text


def _scores(raw: Mapping[str, Any]) -> RowScores | None:
    """The carried columns of a row (None for absent values); None when one is not a number."""
    values = []
    for name in CARRIED_COLUMNS:
        value = raw.get(name)
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None
        values.append(value)
    return RowScores(*values)


def _ended(raw: Mapping[str, Any], *names: str) -> tuple[bool | None, ...] | None:
    """The ended flags of a row (None where absent); None when one is not a boolean."""
    flags = tuple(raw.get(name) for name in names)
    return flags if all(flag is None or isinstance(flag, bool) for flag in flags) else None


def _sft_row(raw: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase) -> SFTRow | BadReason:
    prompt, response = raw.get("prompt"), raw.get("response")
    if prompt is None or response is None:
        return BadReason.missing_field
    ended = _ended(raw, "ended")
    if ended is None:
        return BadReason.unparseable
    if isinstance(prompt, list):
        if isinstance(response, str):
            response = [{"role": "assistant", "content": response}]
        parts = _render(prompt, [response], tokenizer)
    else:
        parts = _strings(prompt, response)
    if isinstance(parts, BadReason):
        return parts
    problem = check_texts(parts[0], parts[1:], ended)
    if problem is not None:
        return problem
    return SFTRow(parts[0], parts[1], *ended, templated=isinstance(prompt, list))


# ------------------------------------------------------------------------- conversational
def _conversational_pair(
    raw: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase
) -> tuple[str, ...] | BadReason:
    """Explicit (prompt messages + one answer each) or whole conversations (shared leading
    messages; a ``prompt`` that is not a list of messages is then not read)."""
    chosen, rejected = raw["chosen"], raw["rejected"]
    if not all(isinstance(answer, str | list) for answer in (chosen, rejected)):
        return BadReason.not_text
    if not isinstance(chosen, list) or not isinstance(rejected, list):
        return BadReason.unparseable
    if isinstance(raw.get("prompt"), list):
        return _render(raw["prompt"], [chosen, rejected], tokenizer)
    if not chosen or not rejected:
        return BadReason.unparseable
    if chosen[:-1] != rejected[:-1]:
        return BadReason.diverges_before_last_turn
    return _render(chosen[:-1], [chosen[-1:], rejected[-1:]], tokenizer)


def _render(
    prompt: Any, answers: Sequence[Any], tokenizer: PreTrainedTokenizerBase
) -> tuple[str, ...] | BadReason:
    """(prompt text, answer texts...) rendered with the chat template, checked for consistency.

    Each answer is a list holding exactly one assistant message (or that message itself).
    """
    messages = [
        answer[0] if isinstance(answer, list) and len(answer) == 1 else answer for answer in answers
    ]
    problem = _check_messages(prompt, messages, tokenizer.all_special_tokens)
    if problem is not None:
        return problem
    prompt_text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    texts = [prompt_text]
    for message in messages:
        full = tokenizer.apply_chat_template([*prompt, message], tokenize=False)
        if not full.startswith(prompt_text + message["content"]):
            return BadReason.unparseable
        texts.append(message["content"])
    return tuple(texts)


def _check_messages(
    prompt: Any, answers: Sequence[Any], specials: Sequence[str]
) -> BadReason | None:
    """Checks of the prompt messages and the answer messages, before anything is rendered.

    ``specials`` are the tokenizer's special-token texts, which no prompt message may hold.
    """
    if not isinstance(prompt, list) or not all(_is_message(m) for m in [*prompt, *answers]):
        return BadReason.unparseable
    if any(message["role"] not in ROLES for message in [*prompt, *answers]):
        return BadReason.unknown_role
    if any(message["role"] != "assistant" for message in answers):
        return BadReason.unparseable
    if not any(message["content"].strip() for message in prompt):
        return BadReason.empty_prompt
    if any(token in message["content"] for message in prompt for token in specials):
        return BadReason.special_token_text
    return None


def _is_message(message: Any) -> bool:
    return (
        isinstance(message, Mapping)
        and isinstance(message.get("role"), str)
        and isinstance(message.get("content"), str)
    )
