import re

import pytest
from transformers import AutoTokenizer

import corpus
import train_tokenizer
from common import SPACE_MARK as M
from common import UserError, detokenize, split_words
from conftest import run_main

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
    assert train_tokenizer.build_normalizer().normalize_str(raw) == clean


def pieces(text):
    tokenizer = train_tokenizer.build_tokenizer()
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
    assert train_tokenizer.build_decoder().decode(tokens) == text


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
    normalizer = train_tokenizer.build_normalizer()
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
        normalized = train_tokenizer.build_normalizer().normalize_str(text)
        assert tokenizer.decode(ids) == " " + re.sub(r"\s+", " ", normalized).strip()


def test_saved_folder_loads_with_autotokenizer(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "[PAD]" and tokenizer.unk_token == "[UNK]"
    ids = tokenizer('Lily\'s mom said, "Don\'t go!"')["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert M + "lily's" in tokens and M + "don't" in tokens and "[UNK]" not in tokens
    # tokenizer.decode alone reads as English; it keeps the space before the first word, which the
    # scripts' detokenize drops
    assert tokenizer.decode(ids) == ' lily\'s mom said, "don\'t go!"'
    assert detokenize(tokenizer, ids) == 'lily\'s mom said, "don\'t go!"'
    eot = tokenizer.eos_token_id
    assert tokenizer.decode([eot, *ids, eot], skip_special_tokens=True) == tokenizer.decode(ids)


def test_round_trip_of_stories(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert round_trip_rate(tokenizer, corpus.stories(50, seed=3)) == 1.0


def test_detokenize_shows_a_prompts_unknown_words(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    words, ids = split_words(tokenizer, 'Tom said, "Zyzzyva!"')
    assert tokenizer.unk_token_id in ids
    assert detokenize(tokenizer, [], words) == 'tom said, "zyzzyva!"'
    assert detokenize(tokenizer, tokenizer(" and a cat.")["input_ids"], words) == 'tom said, "zyzzyva!" and a cat.'
    assert detokenize(tokenizer, ids) == 'tom said, "!"'  # skip_special_tokens drops the [UNK] itself


def test_vocabulary_has_every_word_length(tokenizer_dir):
    from pilish import letters_in
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lengths = {letters_in(word) for word in tokenizer.get_vocab()}
    assert set(range(1, 15)) <= lengths


def test_training_prints_what_users_want(corpus_file, tmp_path, capsys):
    run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path}", "--vocab_size=60"])
    out = capsys.readouterr().out
    assert re.search(r"read [\d,]+ stories, [\d,]+ words", out)
    assert "vocabulary: 60 tokens" in out
    rate = float(re.search(r"\[UNK\] rate on [\d,]+ held-out stories: ([\d.]+)%", out).group(1))
    assert rate > 0  # 60 words cannot cover the corpus: the held-out slice has unknown words
    assert len(AutoTokenizer.from_pretrained(tmp_path)) == 60
    assert (f'example: Lily\'s mom said, "Don\'t go!" -> {M}lily\'s {M}mom {M}said , {M}" {M}don\'t {M}go ! " '
            '-> lily\'s mom said, "don\'t go!"\n') in out


@pytest.mark.parametrize("arg, message", [("--vocab_size=2", "VOCAB_SIZE"), ("--vocab_size=3", "VOCAB_SIZE"),
                                          ("--held_out=1", "HELD_OUT"), ("--held_out=-0.1", "HELD_OUT")])
def test_bad_sizes_are_errors(corpus_file, tmp_path, arg, message):
    with pytest.raises(UserError, match=message):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path}", arg])


# ---------------------------------------------------------------- what the settings do, counted by hand

def trained(texts, **options):
    from tokenizers import trainers
    tokenizer = train_tokenizer.build_tokenizer(options.pop("lowercase", True))
    trainer = trainers.WordLevelTrainer(vocab_size=100, special_tokens=train_tokenizer.SPECIAL_TOKENS, **options)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def test_unk_rate_counts_words_not_marks():
    tokenizer = trained(["the cat sat on the mat."])
    # words: the dog sat on a mat (6); unknown: dog, a (2); the marks , ! " are not words
    rate, words = train_tokenizer.unk_rate(tokenizer, ['the dog sat, on a mat!"'])
    assert (rate, words) == (2 / 6, 6)
    rate, words = train_tokenizer.unk_rate(tokenizer, ["the cat.", "zebra zebra, sat"])
    assert (rate, words) == (2 / 5, 5)
    assert train_tokenizer.unk_rate(tokenizer, ["...!"]) == (0.0, 0)


def write_stories(path, stories):
    return str(corpus.write_txt(path, stories))


def words_in(tokenizer):
    """The vocabulary's entries as text, without the space mark (a word "▁lily" reads "lily")."""
    from pilish import token_text
    return {token_text(token) for token in tokenizer.get_vocab()}


def tokens_of(tokenizer, text):
    from pilish import token_text
    return [token_text(token) for token in tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])]


def test_held_out_stories_are_the_last_ones_and_their_unk_rate_is_exact(tmp_path, capsys):
    stories = [f"Lily saw a cat number {i}." for i in range(8)] + ["Lily saw a zebra!", "The zebra saw a cat, wow."]
    data = write_stories(tmp_path / "s.txt", stories)
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'tok'}", "--held_out=0.2"])
    out = capsys.readouterr().out
    assert "read 8 stories, 48 words" in out
    # held out: "lily saw a zebra" + "the zebra saw a cat wow": 10 words, unknown: zebra, the, zebra, wow
    assert "[UNK] rate on 2 held-out stories: 40.00% of 10 words" in out
    vocab = words_in(AutoTokenizer.from_pretrained(tmp_path / "tok"))
    assert "number" in vocab and "zebra" not in vocab and "wow" not in vocab


def test_max_stories_reads_only_the_first_ones(tmp_path, capsys):
    data = write_stories(tmp_path / "s.txt", ["Lily saw a cat.", "Tom saw a dog.", "Sue saw a zebra."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--max_stories=2"])
    assert "read 2 stories, 8 words" in capsys.readouterr().out
    vocab = words_in(AutoTokenizer.from_pretrained(tmp_path))
    assert {"lily", "tom", "cat", "dog"} <= vocab and "sue" not in vocab and "zebra" not in vocab


def test_min_frequency_drops_rare_words(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["Lily saw a cat.", "Lily saw a dog.", "Lily saw a cat!"])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--min_frequency=2"])
    vocab = words_in(AutoTokenizer.from_pretrained(tmp_path))
    assert {"lily", "saw", "a", "cat", "."} <= vocab and "dog" not in vocab and "!" not in vocab


def test_lowercase_false_keeps_case(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["Lily saw lily.", "Lily saw a cat."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'cased'}", "--held_out=0",
                               "--lowercase=false"])
    cased = AutoTokenizer.from_pretrained(tmp_path / "cased")
    assert {"Lily", "lily"} <= words_in(cased)
    assert tokens_of(cased, "Lily saw lily") == ["Lily", "saw", "lily"]
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'folded'}", "--held_out=0"])
    folded = AutoTokenizer.from_pretrained(tmp_path / "folded")
    assert "Lily" not in words_in(folded)
    assert tokens_of(folded, "Lily saw LILY") == ["lily", "saw", "lily"]


def test_vocab_size_caps_the_vocabulary_at_the_most_frequent_words(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["a a a a b b b c c d."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--vocab_size=6"])
    vocab = words_in(AutoTokenizer.from_pretrained(tmp_path))
    assert len(vocab) == 6 and {"a", "b", "c"} <= vocab and "d" not in vocab
