"""pilish.fluency: the measure on hand-made stories whose counts are worked out by hand below."""

import gzip
import math

import corpus
from pilish import fluency

REFERENCE_STORIES = [
    'Tom said, "I like the red ball." The dog ran.',  # opens a quote after `said,`
    'Mia said, â€œGo home!â€\x9d',  # mojibake quotes read as plain ones; `said,` now opens two quotes
]

# words: the red ball ran the the dog ran go home tom said red ball
TEXT = 'The red ball ran. The the dog ran, "go home!" Tom said, "red ball."'


def test_tokens_normalize_case_quotes_and_apostrophes():
    assert fluency.tokens("Lily’s mom said, “Don't go!”") == ["lily's", "mom", "said", ",", '"', "don't", "go", "!", '"']
    assert fluency.words("Lily’s mom said, “Don't go!”") == ["lily's", "mom", "said", "don't", "go"]


def test_reference_collects_ngrams_sentence_ends_and_speech_words():
    reference = fluency.build_reference(REFERENCE_STORIES)
    assert reference.words == 10 + 4
    assert ("ball", "the") in reference.bigrams and ("ball", "mia") not in reference.bigrams  # not across stories
    assert reference.sentence_final == {("red", "ball"), ("dog", "ran"), ("go", "home")}
    assert reference.speech_words == {"said"}  # twice; a word seen once is not enough


def test_hand_counted_text():
    reference = fluency.build_reference(REFERENCE_STORIES)
    counts = fluency.measure(TEXT, reference)
    # bigrams: the red, red ball, the dog, dog ran, go home, tom said, red ball occur (7 of 13)
    assert (counts.bigrams, counts.bigram_hits) == (13, 7)
    # trigrams: the red ball, the dog ran (2 of 12)
    assert (counts.trigrams, counts.trigram_hits) == (12, 2)
    assert counts.repeats == 1  # "the the"
    # sentences end on (ball, ran) no, (go, home) yes, (red, ball) yes
    assert (counts.sentences, counts.good_ends) == (3, 2)
    assert counts.words == 14 and math.isclose(counts.words_per_sentence, 14 / 3)
    # quotes: `ran, "` opens after a word that introduces no speech: bad; `!"`, `said, "`, `."` are right
    assert (counts.quotes, counts.bad_quotes) == (4, 1)
    assert math.isclose(counts.bigram_share, 7 / 13) and math.isclose(counts.repeat_share, 1 / 13)
    total = counts + counts
    assert (total.bigrams, total.bad_quotes, total.bad_quote_share) == (26, 2, 0.25)


def test_a_text_starting_with_dialogue_and_an_empty_text():
    reference = fluency.build_reference(REFERENCE_STORIES)
    assert fluency.measure('"Go home!" Tom said.', reference).bad_quotes == 0
    assert fluency.measure("Tom ran. Tom ran ran.", reference).repeats == 1  # "Tom. Tom" is no repeat
    empty = fluency.measure("", reference)
    assert empty.bigrams == 0 and math.isnan(empty.bigram_share) and empty.bad_quote_share == 0
    assert math.isnan(empty.words_per_sentence)
    assert fluency.measure("tom ran and ran home", reference).words_per_sentence == 5  # no mark: one sentence


def test_real_looking_stories_score_high_against_themselves(tmp_path):
    stories = corpus.stories(50)
    path = corpus.write_txt(tmp_path / "stories.txt", stories)
    assert fluency.read_stories(path) == stories
    reference = fluency.build_reference(stories[:40])
    held_out = sum((fluency.measure(story, reference) for story in stories[40:]), fluency.Fluency())
    assert held_out.bigram_share > 0.9 and held_out.repeats == 0 and held_out.bad_quotes == 0


def test_read_stories_takes_gzipped_files_as_the_bench_defaults_are(tmp_path):
    text = "Tom saw a cat.\n<|endoftext|>\nLily said, \"hi!\"\n\nShe ran.\n<|endoftext|>\n"
    (tmp_path / "s.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "s.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)
    stories = fluency.read_stories(tmp_path / "s.txt.gz")
    assert stories == fluency.read_stories(tmp_path / "s.txt") == ["Tom saw a cat.", 'Lily said, "hi!"\n\nShe ran.']
