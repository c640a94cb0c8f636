"""lmkit.tokenizer: the normalizer that repairs the data set's defects, the pre-tokenizer that cuts words
and marks, the decoder that puts the spaces back, and the [UNK] rate."""

import re

import pytest
from tokenizers import trainers
from transformers import AutoTokenizer

import corpus
import train_tokenizer
from conftest import run_main
from lmkit.text import SPACE_MARK as M
from lmkit.text import SPECIAL_TOKENS
from lmkit.tokenizer import build_decoder, build_normalizer, build_tokenizer, unk_rate

DEFECTS = [
    ("She took her daddyâ€™s tie.", "she took her daddy's tie."),
    ("He said, â€œBe careful!â€\x9d", 'he said, "be careful!"'),
    ("He said, â€œBe careful!â€ Annie jumped.", 'he said, "be careful!" annie jumped.'),
    ("â€˜Hiâ€™ she whispered", "'hi' she whispered"),
    ("Wait â€” look â€“ there", "wait  -  look  -  there"),
    ("â€œWhy?â€", '"why?"'),
    ("It was “fun” and ‘nice’…", 'it was "fun" and \'nice\'...'),
    ("A café — naïve", "a cafe  -  naive"),
]


@pytest.mark.parametrize("raw, clean", DEFECTS)
def test_normalizer_repairs_the_data_sets_defects(raw, clean):
    assert build_normalizer().normalize_str(raw) == clean


def pieces(text):
    tokenizer = build_tokenizer()
    return [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))]


def test_pre_tokenizer_keeps_contractions_and_splits_punctuation():
    assert pieces('Lily\'s mom said, "Don\'t go!" Timmy\'s ice-cream... (42)') == [
        M + "lily's", M + "mom", M + "said", ",", M + '"', M + "don't", M + "go", "!", '"', M + "timmy's",
        M + "ice-cream", ".", ".", ".", M + "(", M + "42", ")"]


@pytest.mark.parametrize("text, expected", [
    # every word carries the mark, even where the text has no space before it: one form per word
    ('"Hi," said Tom.', [M + '"', M + "hi", ",", '"', M + "said", M + "tom", "."]),
    ("Wait...what? 3rd", [M + "wait", ".", ".", ".", M + "what", "?", M + "3", M + "rd"]),
    # an opening quote follows a space; a closing one (or a plural possessive) does not
    ("'No', she said. The dogs' ball.", [M + "'", M + "no", "'", ",", M + "she", M + "said", ".", M + "the",
                                          M + "dogs", "'", M + "ball", "."]),
    ("  two\n\nlines  ", [M + "two", M + "lines"]),
    ("", []),
])
def test_every_word_carries_the_space_mark(text, expected):
    assert pieces(text) == expected


@pytest.mark.parametrize("tokens, text", [
    ([M + "lily's", M + "mom", M + "said", ",", M + '"', M + "don't", M + "go", "!", '"'],
     ' lily\'s mom said, "don\'t go!"'),
    ([M + '"', M + "hi", ",", '"', M + "said", M + "tom", "."], ' "hi," said tom.'),
    ([M + "wait", ".", ".", ".", M + "what", "?"], " wait... what?"),
    ([M + "the", M + "dogs", "'", M + "ball", "."], " the dogs' ball."),
    ([M + "'", M + "no", "'", ",", M + "she", M + "said", ";", M + "then", M + "-", M + "yes", ":",
      M + "(", M + "ok", ")"], " 'no', she said; then - yes: (ok)"),
    ([M + "the", "[UNK]", M + "ran", ",", M + '"', "[UNK]", "!", '"'], ' the [UNK] ran, "[UNK]!"'),
    ([",", M + "and"], ", and"),  # a continuation: the text starts where the mark says
])
def test_decoder_spacing(tokens, text):
    assert build_decoder().decode(tokens) == text


TRICKY = [
    'Lily\'s mom said, "Don\'t go!" Tom ran.',
    '"Why?" asked Ben. "Because," said Mia, "it\'s late."',
    "The dogs' ball was red. 'Hello,' she whispered.",
    "Wait... what? He didn't know.",
    "Tom ate ice-cream (the blue one) and a well-known cake; then - yes - he slept: good!",
    "He said, â€œBe careful!â€\x9d Annie jumped. Itâ€™s â€œfunâ€ and â€˜niceâ€™â€¦",
    "She had 3 cats and 12 dogs.\n\nThe end.",
]


def round_trip_rate(tokenizer, texts):
    """Share of `texts` (those without [UNK]) that tokenizer.decode gives back as normalized."""
    normalizer = build_normalizer()
    squeeze = lambda text: re.sub(r"\s+", " ", text).strip()
    results = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        results.append(squeeze(tokenizer.decode(ids)) == squeeze(normalizer.normalize_str(text)))
    return sum(results) / len(results)


def test_tricky_texts_decode_to_themselves(tmp_path):
    corpus.write_txt(tmp_path / "tricky.txt", TRICKY)
    run_main(train_tokenizer, [f"--dataset={tmp_path / 'tricky.txt'}", f"--tokenizer_dir={tmp_path / 'tok'}",
                               "--held_out=0"])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in TRICKY:
        ids = tokenizer(text)["input_ids"]
        normalized = build_normalizer().normalize_str(text)
        assert tokenizer.decode(ids) == " " + re.sub(r"\s+", " ", normalized).strip()


def test_round_trip_of_stories(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert round_trip_rate(tokenizer, corpus.stories(50, seed=3)) == 1.0


def trained(texts, **options):
    tokenizer = build_tokenizer(options.pop("lowercase", True))
    trainer = trainers.WordLevelTrainer(vocab_size=100, special_tokens=SPECIAL_TOKENS, **options)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def test_unk_rate_counts_words_not_marks():
    tokenizer = trained(["the cat sat on the mat."])
    # words: the dog sat on a mat (6); unknown: dog, a (2); the marks , ! " are not words
    rate, words = unk_rate(tokenizer, ['the dog sat, on a mat!"'])
    assert (rate, words) == (2 / 6, 6)
    rate, words = unk_rate(tokenizer, ["the cat.", "zebra zebra, sat"])
    assert (rate, words) == (2 / 5, 5)
    assert unk_rate(tokenizer, ["...!"]) == (0.0, 0)


def test_normalizer_keeps_case_when_asked():
    assert build_normalizer(lowercase=False).normalize_str("Lily’s Café") == "Lily's Cafe"
    assert build_normalizer().normalize_str("Lily’s Café") == "lily's cafe"
