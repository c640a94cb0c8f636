"""A blind reading of two Pilish texts over the same digits: which one reads more like a story?

    python -m bench.blind_reading --text_a=ours.txt --text_b=markov.txt       # writes reader.md and key.json
    python -m bench.blind_reading --score=answers.txt                         # tallies a reader's answers

Cuts both texts into passages of about PASSAGE_WORDS words over the same digits (passage k of each
text spells the same digits), and writes NUM_PAIRS of them as pairs to READER_FILE, each pair's order
drawn with SEED so that a reader cannot tell which text is which; KEY_FILE keeps which text each
pair's A is. Show a reader (a person, or a language model given only READER_FILE) the file; save
their answers, one line per pair (`1 A 3`: pair, passage, confidence 1-3), and run --score on them.
"""

TEXT_A = ""  # a Pilish text (a file)
TEXT_B = ""  # another Pilish text over the same digits
NAME_A = ""  # what the tally calls TEXT_A ("" = its file name without the extension)
NAME_B = ""  # what the tally calls TEXT_B ("" = its file name without the extension)
RULES = "basic"  # the Pilish rules both texts follow (basic or standard)
PASSAGE_WORDS = 60  # words per passage, about (a passage ends where both texts end a word)
NUM_PAIRS = 16  # pairs to show: the first NUM_PAIRS passages of each text
SEED = 42  # draws which text is A in each pair
READER_FILE = "reader.md"  # what a reader sees: the question and the pairs
KEY_FILE = "key.json"  # which text is A in each pair: keep it from the readers
SCORE = ""  # a reader's answers file: tally it against KEY_FILE instead of writing a reading

import json
import random
import re
from collections import Counter
from pathlib import Path

from lmkit.settings import UserError, run_script
from pilish.rules import PilishError, check_rules, digits_of_word
from pilish.tokens import WORD_RE, letters_in

QUESTION = ("Which passage reads more like a coherent children's story? Answer A or B for each pair, "
            "with confidence 1-3 (1: a guess, 3: sure), one line per pair, such as `1 A 3`.")
ANSWER_RE = re.compile(r"^\s*(?:pair\s*)?(\d+)\s*[.:)]?\s*([AB])\b[\s,;:]*([123])?", re.IGNORECASE)


def word_ends(text: str, rules: str) -> tuple[str, dict[int, int]]:
    """(the digits `text` spells, {digit position after a word: where the text after that word starts}).

    A cut after a word keeps the marks that follow it, but an opening quote goes with the word it
    opens (`said, | "go`)."""
    spelled, ends, position = [], {}, 0
    for match in (m for m in WORD_RE.finditer(text) if letters_in(m.group())):
        if spelled:  # the previous word ends here: cut before the quote this word opens, if any
            ends[position] = len(re.sub(r"[\"']+$", "", text[:match.start()]).rstrip())
        digits = digits_of_word(letters_in(match.group()), rules)
        if digits is None:
            raise PilishError(f'"{match.group()}" has more than 10 letters, which the {rules} rules cannot spell')
        spelled.append(digits)
        position += len(digits)
    ends[position] = len(text)
    return "".join(spelled), ends


def aligned_passages(text_a: str, text_b: str, rules: str, passage_words: int, count: int) -> list[dict]:
    """The first `count` passages of each text over the same digits, [{"digits": [first, end), "a", "b"}]:
    each ends at the first digit from `passage_words` on where both texts end a word."""
    (spelled_a, ends_a), (spelled_b, ends_b) = word_ends(text_a, rules), word_ends(text_b, rules)
    shared = len(spelled_a) if spelled_a == spelled_b else next(
        i for i, (a, b) in enumerate(zip(spelled_a + " ", spelled_b + " ")) if a != b)
    passages, start, cut_a, cut_b = [], 0, 0, 0
    while len(passages) < count:
        end = next((p for p in range(start + passage_words, shared + 1) if p in ends_a and p in ends_b), None)
        if end is None:
            raise PilishError(f"the texts share {shared} digits: too few for {count} passages of about "
                              f"{passage_words} words")
        passages.append({"digits": [start, end], "a": text_a[cut_a:ends_a[end]].strip(),
                         "b": text_b[cut_b:ends_b[end]].strip()})
        start, cut_a, cut_b = end, ends_a[end], ends_b[end]
    return passages


def blind_pairs(passages: list[dict], name_a: str, name_b: str, seed: int) -> tuple[str, dict]:
    """(the reader's Markdown: the question and each pair, in a seeded random order within each pair;
    the key: which text each pair's A and B are, and the digits they spell).

    Each text is A in half the pairs (one more for a text drawn with the seed when the count is odd),
    which pairs drawn with the seed: readers lean to A (language-model readers picked A in 10 to 13 of
    16 pairs, BENCHMARKS.md), and a free draw can show one text first in most pairs (seed 7: 12 of 16)."""
    draw = random.Random(seed)
    count = len(passages)
    a_first = [True] * (count // 2) + [False] * (count // 2)
    if count % 2:
        a_first.append(draw.random() < 0.5)
    draw.shuffle(a_first)
    lines, key = ["# Blind reading", "", QUESTION, ""], {}
    for number, (passage, first) in enumerate(zip(passages, a_first), start=1):
        shown = [(name_a, passage["a"]), (name_b, passage["b"])]
        if not first:
            shown.reverse()
        lines += [f"## Pair {number}", "", f"**A:** {shown[0][1]}", "", f"**B:** {shown[1][1]}", ""]
        key[str(number)] = {"A": shown[0][0], "B": shown[1][0], "digits": passage["digits"]}
    return "\n".join(lines), {"seed": seed, "pairs": key}


def read_answers(text: str) -> dict[str, tuple[str, int | None]]:
    """{pair: (A or B, confidence or None)} from answer lines such as `1 A 3`, `Pair 2: b, 1`; others are ignored."""
    answers = {}
    for line in text.splitlines():
        match = ANSWER_RE.match(line)
        if match:
            answers[match.group(1)] = (match.group(2).upper(), int(match.group(3)) if match.group(3) else None)
    return answers


def tally(answers: dict[str, tuple[str, int | None]], key: dict) -> dict[str, Counter]:
    """{text name: Counter of the confidences of the pairs it won} (confidence None when not given)."""
    # the texts in the order the key names them (text_a first), else as the pairs show them
    names = [*key.get("texts", {})] + [name for pair in key["pairs"].values() for name in (pair["A"], pair["B"])]
    wins = {name: Counter() for name in names}
    for pair, (letter, confidence) in answers.items():
        if pair in key["pairs"]:
            wins[key["pairs"][pair][letter]][confidence] += 1
    return wins


def score(answers_file: str, key_file: str) -> None:
    key = json.loads(read(key_file))
    answers = read_answers(read(answers_file))
    unknown = sorted(set(answers) - set(key["pairs"]), key=int)
    if unknown:
        raise UserError(f"{answers_file} answers pairs that {key_file} does not have: {', '.join(unknown)}")
    for name, wins in tally(answers, key).items():
        by_confidence = ", ".join(f"{wins[c]} at {c}" for c in (3, 2, 1) if wins[c])
        print(f"{name}: {sum(wins.values())} of {len(key['pairs'])} pairs"
              + (f" ({by_confidence})" if by_confidence else ""))
    chose_a = sum(letter == "A" for pair, (letter, _) in answers.items() if pair in key["pairs"])
    if answers:
        print(f"chose A in {chose_a} of {len(answers)} pairs (each text is A in half of them, so a lean to A cancels)")
    missing = len(key["pairs"]) - len(answers)
    if missing:
        print(f"unanswered: {missing}")


def read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None


def main(config):
    if config.SCORE:
        return score(config.SCORE, config.KEY_FILE)
    check_rules(config.RULES)
    if not (config.TEXT_A and config.TEXT_B):
        raise UserError("name both texts: --text_a=FILE --text_b=FILE (or score answers with --score=FILE)")
    if min(config.PASSAGE_WORDS, config.NUM_PAIRS) < 1:
        raise UserError("PASSAGE_WORDS and NUM_PAIRS must be at least 1")
    names = [config.NAME_A or Path(config.TEXT_A).stem, config.NAME_B or Path(config.TEXT_B).stem]
    if names[0] == names[1]:
        raise UserError(f"both texts are called {names[0]!r}: give them names with --name_a and --name_b")
    passages = aligned_passages(read(config.TEXT_A), read(config.TEXT_B), config.RULES, config.PASSAGE_WORDS,
                                config.NUM_PAIRS)
    reader, key = blind_pairs(passages, *names, config.SEED)
    key["texts"] = {names[0]: config.TEXT_A, names[1]: config.TEXT_B}
    Path(config.READER_FILE).write_text(reader + "\n", encoding="utf-8")
    Path(config.KEY_FILE).write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(passages)} pairs to {config.READER_FILE} (show it to readers) and the key to {config.KEY_FILE} "
          f"(keep it from them); then: python -m bench.blind_reading --score=ANSWERS --key_file={config.KEY_FILE}")


if __name__ == "__main__":
    run_script(main, globals(), errors=(PilishError,))
