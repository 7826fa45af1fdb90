"""Built-in synthetic text corpora, so tests, the demo and benchmarks have data offline.

``sentiment_corpus`` makes short product and movie reviews from templates whose sentiment
words (good, great, excellent, awful, terrible, poor, ...) all have WordNet synonyms, so
both character-level and synonym attacks have something to work on. ``spam_corpus`` is a
content-filter flavour: spam offers versus ordinary messages. Both are seeded and balanced.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from rampart.errors import ConfigError

SUBJECTS = (
    "movie", "film", "book", "phone", "camera", "hotel", "restaurant", "laptop", "service",
    "meal", "story", "acting", "battery", "screen", "staff", "room", "coffee", "game", "show",
    "soundtrack", "keyboard", "novel", "plot", "food", "product",
)
POSITIVE_ADJ = (
    "good", "great", "excellent", "wonderful", "fantastic", "superb", "pleasant", "delightful",
    "amazing", "brilliant", "lovely", "impressive", "enjoyable", "nice", "fine", "outstanding",
    "terrific", "splendid", "beautiful", "perfect",
)
NEGATIVE_ADJ = (
    "bad", "awful", "terrible", "poor", "horrible", "dreadful", "disappointing", "boring",
    "mediocre", "annoying", "useless", "dull", "nasty", "unpleasant", "weak", "lousy",
    "miserable", "pathetic", "ugly", "broken",
)
POSITIVE_VERB = ("loved", "enjoyed", "liked", "adored", "appreciated", "admired")
NEGATIVE_VERB = ("hated", "disliked", "regretted", "detested", "despised", "resented")
POSITIVE_NOUN = ("pleasure", "delight", "joy", "treat", "success", "gem")
NEGATIVE_NOUN = ("disaster", "failure", "mess", "waste", "letdown", "nightmare")
ADVERBS = ("really", "very", "quite", "truly", "extremely", "pretty", "rather", "so")
FILLERS = (
    "I bought it last week.", "We watched it on Friday.", "My friend suggested it.",
    "It arrived on time.", "I used it for a month.", "We went there for dinner.",
    "The price was average.", "I read it on the train.", "It came in a small box.",
    "We stayed for two nights.", "I tried it after work.", "My sister had one too.",
)
TEMPLATES = (
    "The {subj} was {adv} {adj}.",
    "I {verb} this {subj}.",
    "What a {adj} {subj}!",
    "{filler} Overall the {subj} is {adj}.",
    "The {subj} is {adj} and the {subj2} is {adj2}.",
    "Honestly, a {adv} {adj} {subj}. I {verb} it.",
    "This {subj} was a {noun}.",
    "{filler} The {subj} felt {adv} {adj}, a real {noun}.",
    "I {verb} the {subj}; the {subj2} was {adj}.",
    "{filler} I {verb} it, the {subj} is {adv} {adj}.",
)

SPAM = (
    "Win a free {prize} now! Click the link to claim your {reward}.",
    "Congratulations, you have been selected for a {reward}. Reply today to claim it.",
    "Cheap {prize} offer, limited time only. Buy now and get a bonus {reward}.",
    "URGENT: your account won a {prize}. Send your details to receive the {reward}.",
    "Earn money fast from home! Free {reward} for every new member. Act now.",
    "Exclusive deal: {prize} at ninety percent off. Click here before midnight.",
)
HAM = (
    "Can we meet {time} to discuss the {topic}?",
    "Thanks for the notes on the {topic}, I will read them {time}.",
    "Are you coming to the {topic} {time}? Let me know.",
    "I left the {topic} documents on your desk, see you {time}.",
    "Please review the {topic} draft before {time}.",
    "Dinner {time} sounds good, I will bring the {topic} photos.",
)
PRIZES = ("iPhone", "cruise", "gift card", "laptop", "holiday", "car", "watch", "prize")
REWARDS = ("cash prize", "voucher", "reward", "free gift", "bonus", "discount", "jackpot")
TIMES = ("tomorrow", "on Monday", "after lunch", "this evening", "next week", "at noon")
TOPICS = ("budget", "project", "meeting", "report", "trip", "garden", "school", "contract")

_ARTICLE = re.compile(r"\b([Aa]) ([aeiou])")

SENTIMENT_LABELS = ["negative", "positive"]
SPAM_LABELS = ["ham", "spam"]


def _review(rng: random.Random, positive: bool) -> str:
    adjs = POSITIVE_ADJ if positive else NEGATIVE_ADJ
    subj, subj2 = rng.sample(SUBJECTS, 2)
    template = rng.choice(TEMPLATES)
    text = template.format(
        subj=subj, subj2=subj2, adj=rng.choice(adjs), adj2=rng.choice(adjs),
        adv=rng.choice(ADVERBS), filler=rng.choice(FILLERS),
        verb=rng.choice(POSITIVE_VERB if positive else NEGATIVE_VERB),
        noun=rng.choice(POSITIVE_NOUN if positive else NEGATIVE_NOUN),
    )
    text = _ARTICLE.sub(lambda m: m.group(1) + "n " + m.group(2), text)
    return text[0].upper() + text[1:]


def _message(rng: random.Random, spam: bool) -> str:
    template = rng.choice(SPAM if spam else HAM)
    return template.format(
        prize=rng.choice(PRIZES), reward=rng.choice(REWARDS), time=rng.choice(TIMES),
        topic=rng.choice(TOPICS),
    )


def _balanced(
    n: int, seed: int, make: Callable[[random.Random, bool], str]
) -> tuple[list[str], list[int]]:
    if int(n) < 2:
        raise ConfigError(f"a corpus needs at least 2 texts, got n={n}")
    rng = random.Random(seed)
    labels = [i % 2 for i in range(int(n))]
    rng.shuffle(labels)
    return [make(rng, bool(label)) for label in labels], labels


def sentiment_corpus(n: int = 2000, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` synthetic reviews and their labels (0 negative, 1 positive), balanced, seeded."""
    return _balanced(n, seed, _review)


def spam_corpus(n: int = 2000, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` synthetic messages and their labels (0 ham, 1 spam), balanced, seeded."""
    return _balanced(n, seed, _message)


CORPORA = {"sentiment": (sentiment_corpus, SENTIMENT_LABELS), "spam": (spam_corpus, SPAM_LABELS)}


def load_corpus(name: str, n: int = 2000, seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """A built-in corpus by name: (texts, labels, class names)."""
    if name not in CORPORA:
        raise ConfigError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    make, names = CORPORA[name]
    texts, labels = make(n, seed)
    return texts, labels, list(names)
