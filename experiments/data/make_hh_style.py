"""Writes ``hh_style.jsonl``: HH-RLHF-style preference pairs generated from templates, offline.

Each row is ``{"chosen": ..., "rejected": ...}``, two full dialogues in Anthropic HH-RLHF's text
format (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) that share every turn but the last assistant
answer. The preference signal is the one human raters of HH give: the chosen answer is on topic,
polite and complete; the rejected one is curt, rude, off topic, cut off, or evasive. Dialogues
have one to three human turns; earlier assistant turns are helpful and short.

The row count (397 by default) deliberately does not divide common batch sizes, so that every
stage meets a partial last batch. Run from the repository root:

    python experiments/data/make_hh_style.py               # rewrites experiments/data/...jsonl
    python experiments/data/make_hh_style.py --rows 50 --out /tmp/small.jsonl --seed 3
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


@dataclass(frozen=True)
class Topic:
    """What one subject's questions are about and what a helpful answer to them says."""

    name: str
    things: tuple[str, ...]
    """Fillers of ``{thing}`` in the questions and answers."""
    questions: tuple[str, ...]
    tips: tuple[str, ...]
    """Sentences a helpful answer is made of (each may use ``{thing}``)."""
    caution: str
    """What a complete answer adds at the end."""


TOPICS = (
    Topic(
        "cooking",
        ("a tomato soup", "fresh pasta", "a simple curry", "banana bread", "a vegetable stew"),
        ("How do I make {thing} at home?", "Can you give me a recipe for {thing}?",
         "What is the easiest way to cook {thing} for four people?"),
        ("Start by chopping an onion and two cloves of garlic and soften them in a little oil.",
         "Add the main ingredients for {thing} and season with salt and pepper.",
         "Let it simmer gently for about twenty minutes, stirring now and then.",
         "Taste it before serving and adjust the seasoning if it needs more salt or acid.",
         "Fresh herbs such as basil or parsley at the end make {thing} taste brighter.",
         "If you prepare everything before you turn on the stove, the cooking is relaxed."),
        "Keep an eye on the heat so nothing burns at the bottom of the pan.",
    ),
    Topic(
        "gardening",
        ("tomatoes", "a small herb garden", "roses", "strawberries", "a vegetable patch"),
        ("How should I start growing {thing}?", "What do {thing} need to grow well?",
         "My {thing} are not doing well. What can I do?"),
        ("Pick a spot that gets at least six hours of sun a day.",
         "Use loose soil with plenty of compost so the roots can breathe.",
         "Water {thing} deeply in the morning rather than a little every evening.",
         "A layer of mulch keeps the soil moist and the weeds down.",
         "Check the leaves every few days; yellow leaves often mean too much water.",
         "Feed {thing} with a gentle fertiliser once a month in the growing season."),
        "Start small, so that looking after it stays a pleasure rather than a chore.",
    ),
    Topic(
        "travel",
        ("a trip to Lisbon", "a weekend in the mountains", "a long train journey",
         "a first visit to Japan", "a budget trip to Italy"),
        ("Can you help me plan {thing}?", "What should I pack for {thing}?",
         "Do you have any tips for {thing}?"),
        ("Book the places to sleep early; the good and cheap ones go first.",
         "Pack light: comfortable shoes, layers of clothing and a small first aid kit.",
         "Keep copies of your passport and tickets on your phone and on paper.",
         "Learn a few polite phrases in the local language; people appreciate it.",
         "Leave one free day in the plan so that a delay does not spoil {thing}.",
         "Local markets and bakeries are a cheap and friendly way to eat well."),
        "Check the entry rules and the weather a few days before you leave.",
    ),
    Topic(
        "fitness",
        ("running", "strength training", "a morning stretching routine", "swimming",
         "cycling to work"),
        ("How do I get started with {thing}?", "How often should I do {thing} as a beginner?",
         "Is {thing} a good way to get fit?"),
        ("Begin with short sessions, about twenty minutes, three times a week.",
         "Warm up for five minutes before you start and cool down afterwards.",
         "Increase the effort slowly, by about ten percent a week at most.",
         "Rest days matter as much as training days; that is when the body gets stronger.",
         "Drink water and eat a light snack with some protein after {thing}.",
         "Writing down each session helps you see your progress and stay motivated."),
        "If anything hurts sharply, stop and ask a doctor or a physiotherapist.",
    ),
    Topic(
        "programming",
        ("Python", "a first website", "unit tests", "version control with git",
         "a small command line tool"),
        ("How do I learn {thing}?", "What is a good first project with {thing}?",
         "Can you explain how to get started with {thing}?"),
        ("Start with a tiny project that you actually want to use.",
         "Read the official tutorial first; it is usually clearer than random videos.",
         "Write a little code every day rather than a lot once a week.",
         "When something breaks, read the error message slowly; it often names the line.",
         "Keep your work in git so you can always go back to a version that worked.",
         "Ask for a code review from a friend; explaining {thing} teaches you a lot."),
        "Be patient with yourself: everyone who is good at {thing} was once a beginner.",
    ),
    Topic(
        "money",
        ("a monthly budget", "an emergency fund", "saving for a holiday",
         "paying off a credit card", "a first savings account"),
        ("How do I set up {thing}?", "Do you have advice about {thing}?",
         "What is a sensible way to handle {thing}?"),
        ("Write down what comes in and what goes out for one ordinary month.",
         "Separate the needs, such as rent and food, from the wants.",
         "Move a fixed amount to savings on the day you are paid, before spending.",
         "Pay the debt with the highest interest first while paying the minimum on the rest.",
         "Review {thing} once a month and adjust it when your life changes.",
         "Small regular amounts add up; even a little each week makes a difference."),
        "For big decisions, a free session with a financial adviser can be worth it.",
    ),
    Topic(
        "pets",
        ("a new puppy", "an older cat", "a pet rabbit", "a goldfish tank", "a rescue dog"),
        ("How do I take care of {thing}?", "What does {thing} need in the first weeks?",
         "Any advice for living with {thing}?"),
        ("Give them a quiet corner with a bed where they can rest undisturbed.",
         "Keep to regular times for food, walks and sleep; animals love routine.",
         "Visit a vet early for a check-up and the vaccinations they need.",
         "Reward good behaviour with treats and praise instead of punishing mistakes.",
         "Make sure {thing} always has fresh water and food made for its species.",
         "Spend a little time playing together every day; it builds trust."),
        "Watch for changes in appetite or energy, and call the vet if they last.",
    ),
    Topic(
        "music",
        ("the guitar", "the piano", "singing", "reading sheet music", "the violin"),
        ("How can I learn {thing} as an adult?", "What is the best way to practise {thing}?",
         "I want to start {thing}. Where do I begin?"),
        ("Practise for fifteen minutes every day rather than for hours once a week.",
         "Learn a simple song you love early on; it keeps the motivation high.",
         "Use a metronome so your sense of rhythm grows with your technique.",
         "Record yourself now and then; you will hear things you miss while playing.",
         "A few lessons with a teacher help you avoid habits that are hard to unlearn.",
         "Be kind to yourself when {thing} feels slow; progress comes in small steps."),
        "Above all, play music you enjoy, because enjoyment is what keeps you going.",
    ),
    Topic(
        "sleep",
        ("falling asleep", "waking up early", "a regular bedtime", "napping",
         "sleeping on a long flight"),
        ("Do you have tips for {thing}?", "I struggle with {thing}. What helps?",
         "How can I get better at {thing}?"),
        ("Go to bed and get up at the same time every day, weekends included.",
         "Keep the bedroom dark, quiet and a little cool.",
         "Put screens away about an hour before bed and read something calm instead.",
         "Avoid coffee after lunch; it stays in the body for many hours.",
         "A short walk in daylight in the morning helps the body clock with {thing}.",
         "If you cannot sleep after twenty minutes, get up and do something quiet."),
        "If poor sleep goes on for weeks, it is worth talking to a doctor.",
    ),
    Topic(
        "writing",
        ("a cover letter", "a short story", "a thank you note", "an essay", "a wedding speech"),
        ("Can you help me write {thing}?", "How do I make {thing} better?",
         "What should {thing} include?"),
        ("Start with one sentence that says what {thing} is for.",
         "Write a rough first draft quickly, without stopping to fix it.",
         "Cut every sentence that does not help the reader.",
         "Use concrete examples; they are more convincing than general claims.",
         "Read {thing} aloud; awkward sentences are easy to hear.",
         "Ask someone you trust to read it and tell you where they got lost."),
        "Leave it for a day before the final edit, and you will see it with fresh eyes.",
    ),
)

FOLLOW_UPS = (
    "Thank you! What should I avoid with {thing}?",
    "That is helpful. How long does it usually take to see results with {thing}?",
    "Great, and what is the most common mistake people make with {thing}?",
    "Could you say a bit more about the first step?",
    "Thanks. Is there anything I should buy or prepare for {thing}?",
)

OPENERS = (
    "Sure, I would be happy to help with {thing}.",
    "Of course! Here is what I would suggest for {thing}.",
    "Good question. A few things make {thing} much easier.",
    "Happy to help. Here is a simple way to approach {thing}.",
)

CLOSERS = (
    "I hope that helps, and let me know if you would like more detail.",
    "Good luck, and feel free to ask if anything is unclear.",
    "Enjoy it, and tell me how it goes if you like.",
)

CURT = ("No idea.", "Just look it up.", "Figure it out yourself.", "Whatever works.",
        "Not my problem.", "Google it.", "Depends.", "Who knows.")

RUDE = ("That is a silly question.", "Why would you even ask that?",
        "Honestly, that is pretty obvious.", "Ugh, this again?", "You should know this already.")

EVASIVE = ("I would rather not talk about {thing}.", "I cannot help with {thing}, sorry.",
           "Let us talk about something else.")


def helpful_answer(
    rng: random.Random, topic: Topic, thing: str, tips: int, complete: bool = True
) -> str:
    """An on-topic, polite answer: an opener and ``tips`` tips, and when ``complete`` the
    topic's caution (half the time) and a friendly closing line."""
    sentences = [rng.choice(OPENERS), *rng.sample(topic.tips, tips)]
    if complete:
        sentences += [topic.caution] if rng.random() < 0.5 else []
        sentences.append(rng.choice(CLOSERS))
    return " ".join(sentences).format(thing=thing)


def rejected_answer(rng: random.Random, topic: Topic, thing: str, chosen: str) -> str:
    """A worse final answer in one of five styles: curt, rude, off topic, cut off, evasive."""
    style = rng.choice(("curt", "rude", "off_topic", "cut_off", "evasive"))
    if style == "curt":
        return rng.choice(CURT)
    if style == "rude":
        return f"{rng.choice(RUDE)} {rng.choice(CURT)}"
    if style == "off_topic":
        other = rng.choice([t for t in TOPICS if t is not topic])
        return helpful_answer(rng, other, rng.choice(other.things), rng.randint(1, 2))
    if style == "cut_off":
        words = chosen.split()
        return " ".join(words[: rng.randint(4, max(5, len(words) // 3))])
    return rng.choice(EVASIVE).format(thing=thing)


def dialogue(rng: random.Random) -> tuple[str, str]:
    """(chosen, rejected): one dialogue of one to three human turns, two final answers."""
    topic = rng.choice(TOPICS)
    thing = rng.choice(topic.things)
    turns = rng.choice((1, 1, 2, 2, 3))
    text = f"{HUMAN} {rng.choice(topic.questions).format(thing=thing)}"
    follow_ups = rng.sample(FOLLOW_UPS, turns - 1)
    for follow_up in follow_ups:
        text += f"{ASSISTANT} {helpful_answer(rng, topic, thing, 1, complete=False)}"
        text += f"{HUMAN} {follow_up.format(thing=thing)}"
    text += ASSISTANT
    chosen = helpful_answer(rng, topic, thing, rng.randint(1, 2))
    rejected = rejected_answer(rng, topic, thing, chosen)
    while rejected == chosen:  # an off-topic answer can never equal it; this is belt and braces
        rejected = rejected_answer(rng, topic, thing, chosen)
    return f"{text} {chosen}", f"{text} {rejected}"


def make_rows(num_rows: int, seed: int) -> list[dict[str, str]]:
    """``num_rows`` rows with distinct prompts (a repeated dialogue is drawn again)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < num_rows:
        chosen, rejected = dialogue(rng)
        prompt = chosen[: chosen.rfind(ASSISTANT)]
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"chosen": chosen, "rejected": rejected})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=397)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("hh_style.jsonl"))
    args = parser.parse_args()
    rows = make_rows(args.rows, args.seed)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} rows to {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
