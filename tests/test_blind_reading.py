"""bench/blind_reading.py: passages of two texts aligned over the same digits, pairs shown in a
seeded order that hides which text is which, and the tally of a reader's answers."""

import json
import re

import pytest

import bench.blind_reading
from bench.blind_reading import QUESTION, aligned_passages, blind_pairs, read_answers, tally, word_ends
from conftest import run_main
from pilish.rules import PilishError, digits_of_word, get_digits
from pilish.tokens import WORD_RE, letters_in

WORDS = {1: "a", 2: "to", 3: "the", 4: "tree", 5: "happy", 6: "little", 7: "kitchen", 8: "elephant",
         9: "beautiful", 10: "strawberry"}
OTHER_WORDS = {1: "i", 2: "we", 3: "cat", 4: "park", 5: "apple", 6: "garden", 7: "rainbow", 8: "dinosaur",
               9: "butterfly", 10: "playground"}


def pilish(digits, words, marks=False):
    """Words of `words` spelling `digits`; with `marks`, a sentence end after every 7th word and a quote
    opened after every 11th (`said, "go`) and closed after the next."""
    out = []
    for i, digit in enumerate(digits, start=1):
        word = words[10 if digit == "0" else int(digit)]
        if marks and i % 11 == 0:
            word = f', "{word}'
        elif marks and i % 11 == 1 and i > 1:
            word += '!"'
        elif marks and i % 7 == 0:
            word += "."
        out.append(word)
    return " ".join(out).replace(' ,', ',')


def spelled(text, rules="basic"):
    return "".join(digits_of_word(letters_in(w), rules) for w in WORD_RE.findall(text) if letters_in(w))


def test_passages_of_both_texts_cover_the_same_digits():
    digits = get_digits("pi", 500)
    plain, marked = pilish(digits, WORDS), pilish(digits, OTHER_WORDS, marks=True)
    passages = aligned_passages(plain, marked, "basic", 60, 8)
    assert [p["digits"] for p in passages] == [[60 * k, 60 * (k + 1)] for k in range(8)]  # basic: a digit a word
    for passage in passages:
        first, end = passage["digits"]
        assert spelled(passage["a"]) == spelled(passage["b"]) == digits[first:end]
    # the cuts lose nothing, keep a mark with its word and an opening quote with the word it opens
    assert " ".join(p["b"] for p in passages) == marked[:len(" ".join(p["b"] for p in passages))]
    assert not any(p["b"].endswith('"') and p["b"].count('"') % 2 for p in passages)
    assert all(re.match(r'^"?[a-z]', p["b"]) for p in passages)
    quoted = aligned_passages(plain, marked, "basic", 10, 2)  # word 11 opens a quote: `garden, | "apple`
    assert quoted[0]["b"].endswith(",") and quoted[1]["b"].startswith('"')


def test_under_the_standard_rules_passages_end_where_both_texts_end_a_word():
    # "12" is one 12-letter word in A and two words (1, 2) in B: no passage may end between them
    text_a = "a to the " * 3 + "grasshoppers tree happy"  # 1 2 3 x3, 12, 4 5
    text_b = "a to the " * 3 + "i we tree happy"
    passages = aligned_passages(text_a, text_b, "standard", 10, 1)
    assert passages[0]["digits"] == [0, 11] and passages[0]["a"].endswith("grasshoppers")
    assert spelled(passages[0]["a"], "standard") == spelled(passages[0]["b"], "standard") == "12312312312"


def test_texts_that_spell_different_digits_or_too_few_are_refused():
    digits = get_digits("pi", 200)
    with pytest.raises(PilishError, match="share 4 digits"):
        aligned_passages(pilish(digits, WORDS), pilish("3141" + "2" * 196, WORDS), "basic", 60, 2)
    with pytest.raises(PilishError, match="too few for 4 passages"):
        aligned_passages(pilish(digits, WORDS), pilish(digits, OTHER_WORDS), "basic", 60, 4)


def test_the_order_in_each_pair_is_drawn_with_the_seed_and_hidden_from_the_reader():
    passages = [{"digits": [k, k + 1], "a": f"ours {k}", "b": f"theirs {k}"} for k in range(16)]
    reader, key = blind_pairs(passages, "ours", "markov", seed=7)
    assert (reader, key) == blind_pairs(passages, "ours", "markov", seed=7)  # the same seed, the same reading
    assert key != blind_pairs(passages, "ours", "markov", seed=8)[1]
    firsts = [pair["A"] for pair in key["pairs"].values()]
    assert firsts.count("ours") == firsts.count("markov") == 8  # each text first in half the pairs
    for seed in range(20):  # whatever the seed; an odd count gives the extra pair to either text
        odd = [pair["A"] for pair in blind_pairs(passages[:15], "ours", "markov", seed)[1]["pairs"].values()]
        assert sorted([odd.count("ours"), odd.count("markov")]) == [7, 8]
    orders = {tuple(pair["A"] for pair in blind_pairs(passages, "ours", "markov", seed)[1]["pairs"].values())
              for seed in range(20)}
    assert len(orders) > 10  # which pairs show ours first is drawn, not fixed
    assert QUESTION in reader and "ours" not in reader.replace("ours ", "") and "markov" not in reader
    for number, pair in key["pairs"].items():  # the key says which passage each letter shows
        shown_a = re.search(rf"## Pair {number}\n\n\*\*A:\*\* (\w+)", reader).group(1)
        assert (shown_a == "ours") == (pair["A"] == "ours") and {pair["A"], pair["B"]} == {"ours", "markov"}


def test_answers_are_read_loosely_and_tallied_per_text():
    answers = read_answers("1 A 3\npair 2: b, 1\n3) a\nnotes: I liked pair 4\n4 B 2\n")
    assert answers == {"1": ("A", 3), "2": ("B", 1), "3": ("A", None), "4": ("B", 2)}
    key = {"pairs": {"1": {"A": "ours", "B": "markov"}, "2": {"A": "ours", "B": "markov"},
                     "3": {"A": "markov", "B": "ours"}, "4": {"A": "markov", "B": "ours"}}}
    wins = tally(answers, key)
    assert wins["ours"] == {3: 1, 2: 1} and wins["markov"] == {1: 1, None: 1}


def test_main_writes_a_reader_file_and_a_key_then_scores_answers(tmp_path, capsys):
    digits = get_digits("pi", 200)
    (tmp_path / "ours.txt").write_text(pilish(digits, WORDS, marks=True))
    (tmp_path / "markov.txt").write_text(pilish(digits, OTHER_WORDS))
    reader, key_file = tmp_path / "reader.md", tmp_path / "key.json"
    run_main(bench.blind_reading, [f"--text_a={tmp_path / 'ours.txt'}", f"--text_b={tmp_path / 'markov.txt'}",
                                   "--num_pairs=3", f"--reader_file={reader}", f"--key_file={key_file}"])
    shown = reader.read_text()
    assert shown.count("## Pair") == 3 and "ours" not in shown and "markov" not in shown
    key = json.loads(key_file.read_text())
    assert key["texts"] == {"ours": str(tmp_path / "ours.txt"), "markov": str(tmp_path / "markov.txt")}
    # a reader who always prefers the passage with marks
    answers = "\n".join(f"{n} {'A' if key['pairs'][str(n)]['A'] == 'ours' else 'B'} 3" for n in (1, 2, 3))
    (tmp_path / "answers.txt").write_text(answers)
    capsys.readouterr()
    run_main(bench.blind_reading, [f"--score={tmp_path / 'answers.txt'}", f"--key_file={key_file}"])
    chose_a = sum(key["pairs"][str(n)]["A"] == "ours" for n in (1, 2, 3))
    assert capsys.readouterr().out.splitlines() == [
        "ours: 3 of 3 pairs (3 at 3)", "markov: 0 of 3 pairs",
        f"chose A in {chose_a} of 3 pairs (each text is A in half of them, so a lean to A cancels)"]


def test_word_ends_map_digits_to_cuts():
    text = 'Lily said, "go home." She ran.'
    digits, ends = word_ends(text, "basic")
    assert digits == "442433"
    assert [text[:cut] for cut in ends.values()] == [
        "Lily", "Lily said,", 'Lily said, "go', 'Lily said, "go home."', 'Lily said, "go home." She', text]
