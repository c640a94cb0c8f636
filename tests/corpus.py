"""A deterministic corpus of simple stories, shaped like TinyStories and carrying its defects.

It has dialogue in straight and curly quotes, the data set's mojibake (â€œ â€ â€™), contractions
and possessives, and words of every length from 1 to 14 letters (Pilish needs them all).
"""

import random

NAMES = ["lily", "tom", "ben", "mia", "sue", "max"]
WORDS_BY_LENGTH = {
    1: ["a"],
    2: ["to", "in", "on", "it", "we"],
    3: ["cat", "dog", "sun", "big", "red", "toy"],
    4: ["park", "tree", "ball", "jump", "blue"],
    5: ["happy", "house", "bread", "sunny", "apple"],
    6: ["garden", "little", "friend", "yellow", "flower"],
    7: ["kitchen", "rainbow", "teacher", "dancing"],
    8: ["elephant", "birthday", "dinosaur", "sandwich"],
    9: ["beautiful", "butterfly", "chocolate", "adventure"],
    10: ["strawberry", "playground", "everything", "lighthouse"],
    11: ["grandmother", "caterpillar", "fascinating"],
    12: ["neighborhood", "grasshoppers", "disappointed"],
    13: ["unforgettable", "extraordinary"],
    14: ["accomplishment"],
}
NOUNS = ["cat", "dog", "toy", "ball", "tree", "apple", "flower", "rainbow", "elephant", "butterfly",
         "strawberry", "caterpillar", "dinosaur", "sandwich", "lighthouse"]
ADJECTIVES = ["big", "red", "blue", "happy", "sunny", "little", "yellow", "beautiful", "fascinating",
              "extraordinary", "unforgettable"]
PLACES = ["park", "garden", "kitchen", "house", "playground", "neighborhood"]
QUOTES = [('"', '"'), ("“", "”"), ("â€œ", "â€\x9d"), ("â€œ", "â€")]
APOSTROPHES = ["'", "’", "â€™"]


def story(rng):
    name, friend = rng.sample(NAMES, 2)
    noun, adjective, place = rng.choice(NOUNS), rng.choice(ADJECTIVES), rng.choice(PLACES)
    open_quote, close_quote = rng.choice(QUOTES)
    apostrophe = rng.choice(APOSTROPHES)
    other = rng.choice([w for words in WORDS_BY_LENGTH.values() for w in words])
    sentences = [
        f"Once upon a time, there was a {adjective} {noun} in the {place}.",
        f"{name.title()} saw it and smiled.",
        f"{name.title()} said, {open_quote}Let{apostrophe}s play with the {noun}!{close_quote}",
        f"{friend.title()}{apostrophe}s {rng.choice(['grandmother', 'teacher', 'friend'])} said it was {rng.choice(['a', 'an'])} {rng.choice(['adventure', 'accomplishment'])}.",
        f"They didn{apostrophe}t want to stop, so they played with the {other} all day.",
        f"{open_quote}I am so happy,{close_quote} said {friend.title()}.",
        f"{name.title()}{apostrophe}s mom said, {open_quote}Don{apostrophe}t go!{close_quote}",
        f"The grasshoppers were not disappointed, and everything was {rng.choice(['sunny', 'beautiful', 'happy'])}.",
    ]
    return " ".join(sentences)


def stories(count=400, seed=0):
    rng = random.Random(seed)
    return [story(rng) for _ in range(count)]


def write_txt(path, texts, separator="<|endoftext|>"):
    """Stories the way the data set's own txt files hold them (or blank-line separated)."""
    joiner = f"\n{separator}\n" if separator else "\n\n"
    path.write_text(joiner.join(texts) + "\n", encoding="utf-8")
    return path
