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
    # the generated stories never put one word twice in a row, even across a mark, so a count of 0
    # repeats would say nothing: one more story has two words repeated across a mark (not repeats)
    held_out_stories = stories[40:] + ["Lily saw the big dog. Dog ran, ran to the park."]
    word_runs = sum(a == b for story in held_out_stories for a, b in zip(fluency.words(story), fluency.words(story)[1:]))
    assert word_runs == 2
    held_out = sum((fluency.measure(story, reference) for story in held_out_stories), fluency.Fluency())
    assert held_out.bigram_share > 0.9 and held_out.repeats == 0
    assert held_out.quotes >= 20 and held_out.bad_quotes == 0  # dialogue there is, all of it well quoted


def test_read_stories_takes_gzipped_files_as_the_bench_defaults_are(tmp_path):
    text = "Tom saw a cat.\n<|endoftext|>\nLily said, \"hi!\"\n\nShe ran.\n<|endoftext|>\n"
    (tmp_path / "s.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "s.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(text)
    stories = fluency.read_stories(tmp_path / "s.txt.gz")
    assert stories == fluency.read_stories(tmp_path / "s.txt") == ["Tom saw a cat.", 'Lily said, "hi!"\n\nShe ran.']


# ---- pinned by mutation testing (issue 23): every quote rule, every share, every form of a mark


def test_every_curly_and_mojibake_form_reads_as_the_plain_mark():
    assert fluency.normalize("â€œAâ€\x9d â€B“C”") == '"a" "b"c"'
    assert fluency.normalize("Iâ€™m â€˜x’ ‘y") == "i'm 'x' 'y"
    assert fluency.tokens("Wait; no: yes... go?") == ["wait", ";", "no", ":", "yes", ".", ".", ".", "go", "?"]
    assert fluency.words("don't-stop 42 rock'n'roll") == ["don't", "stop", "rock'n'roll"]


def test_ngrams_of_a_short_list_are_none():
    assert fluency.ngrams(["a", "b"], 3) == [] and fluency.ngrams(["a", "b", "c"], 3) == [("a", "b", "c")]
    assert fluency.ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]


def test_sentence_ends_are_the_last_two_words_or_the_only_one():
    assert fluency.sentence_ends(fluency.tokens("Go. The big dog ran! ? Yes, sir.")) == [
        ("go",), ("dog", "ran"), ("yes", "sir")]
    assert fluency.sentence_ends(fluency.tokens("no end here")) == []


def test_a_word_introduces_speech_only_before_a_mark_and_only_twice():
    reference = fluency.build_reference(['Mom: "Hi." Dad, "Yo."', 'Mom: "No."', '"Top." Dad "x" , "y"'])
    assert reference.speech_words == {"mom"}  # mom twice (after ":"); dad once with a mark; `, "` after no word
    reference = fluency.build_reference(['"A" "b" ", "c"', '"A" "b" ", "c"'])
    assert reference.speech_words == set()  # quotes at the start, and one after a mark after a quote


def test_each_quote_rule():
    reference = fluency.build_reference(['Tom said, "Hi." Tom said, "Yo."'])
    bad = lambda text: fluency.bad_quotes(fluency.tokens(text), reference)  # noqa: E731
    assert bad('"Hi." Tom said, "Go," he said.') == 0  # opens a text; after `said,`; closes after "," or "."
    assert bad('Tom said: "Hi."') == 0 and bad('Tom said; "Hi."') == 1  # ":" introduces speech, ";" does not
    assert bad('Tom ran, "Hi."') == 1  # "ran" introduces no speech
    assert bad('Tom ran. "Hi!"') == 0  # after a closing mark an opening quote starts a sentence
    assert bad('Tom ran. "Hi!" "Yes?"') == 1  # ...but not right after another quote
    assert bad('"Hi" Tom said.') == 1  # a closing quote after a word
    assert bad('"Hi') == 0 and bad('"') == 0 and bad('""') == 1  # a closing quote right after the opening one
    assert bad(', "Hi."') == 1  # a mark, but no word before it


def test_each_share_and_its_empty_case():
    counts = fluency.Fluency(bigrams=4, bigram_hits=1, trigrams=5, trigram_hits=2, repeats=1, sentences=2,
                             good_ends=1, quotes=4, bad_quotes=3, words=9)
    assert (counts.bigram_share, counts.trigram_share, counts.repeat_share) == (0.25, 0.4, 0.25)
    assert (counts.good_end_share, counts.words_per_sentence, counts.bad_quote_share) == (0.5, 4.5, 0.75)
    empty = fluency.Fluency()
    assert all(math.isnan(share) for share in (empty.trigram_share, empty.repeat_share, empty.good_end_share))
    assert vars(counts + fluency.Fluency(*range(1, 11))) == {
        "bigrams": 5, "bigram_hits": 3, "trigrams": 8, "trigram_hits": 6, "repeats": 6, "sentences": 8,
        "good_ends": 8, "quotes": 12, "bad_quotes": 12, "words": 19}


def test_repeats_are_one_word_twice_with_nothing_between():
    reference = fluency.Reference()
    assert fluency.measure("the the cat. cat , , run run run", reference).repeats == 3  # marks never repeat
    assert fluency.measure('"" "a" a', reference).repeats == 0


def test_every_other_quote_opens_however_many_came_before():
    """The third quote of a text opens: after `said:` it reads as dialogue, after `ran,` it does not."""
    reference = fluency.build_reference(['Tom said, "Hi." Tom said, "Yo."'])
    bad = lambda text: fluency.bad_quotes(fluency.tokens(text), reference)  # noqa: E731
    assert bad('Tom said: "Hi." Tom said: "Yo."') == 0
    assert bad('Tom said: "Hi." Tom ran, "Yo."') == 1
