import re

import pytest
from transformers import AutoTokenizer

import corpus
import train_tokenizer
from common import UserError, detokenize, join_tokens
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


def test_pre_tokenizer_keeps_contractions_and_splits_punctuation():
    tokenizer = train_tokenizer.build_tokenizer()
    text = tokenizer.normalizer.normalize_str('Lily\'s mom said, "Don\'t go!" Timmy\'s ice-cream... (42)')
    pieces = [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    assert pieces == ["lily's", "mom", "said", ",", '"', "don't", "go", "!", '"', "timmy's", "ice-cream",
                      ".", ".", ".", "(", "42", ")"]


@pytest.mark.parametrize("tokens, text", [
    (["lily's", "mom", "said", ",", '"', "don't", "go", "!", '"'], 'lily\'s mom said, "don\'t go!"'),
    (['"', "hi", ",", '"', "said", "tom", "."], '"hi," said tom.'),
    (["wait", ".", ".", ".", "what", "?"], "wait... what?"),
    (["the", "dogs", "'", "ball", "."], "the dogs' ball."),
    (["'", "no", "'", ",", "she", "said", ";", "then", "-", "yes", ":", "(", "ok", ")"],
     "'no', she said; then - yes: (ok)"),
])
def test_join_tokens_spacing(tokens, text):
    assert join_tokens(tokens) == text


def test_saved_folder_loads_with_autotokenizer(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "[PAD]" and tokenizer.unk_token == "[UNK]"
    ids = tokenizer('Lily\'s mom said, "Don\'t go!"')["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert "lily's" in tokens and "don't" in tokens and "[UNK]" not in tokens
    decoded = tokenizer.decode(ids)
    assert " ," not in decoded and " !" not in decoded
    assert detokenize(tokenizer, ids) == 'lily\'s mom said, "don\'t go!"'


def test_round_trip_of_a_story(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    normalizer = tokenizer.backend_tokenizer.normalizer
    for story in corpus.stories(20, seed=3):
        ids = tokenizer(story)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        squeeze = lambda text: re.sub(r"\s+", " ", text).strip()
        assert squeeze(detokenize(tokenizer, ids)) == squeeze(normalizer.normalize_str(story))


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


def test_held_out_stories_are_the_last_ones_and_their_unk_rate_is_exact(tmp_path, capsys):
    stories = [f"Lily saw a cat number {i}." for i in range(8)] + ["Lily saw a zebra!", "The zebra saw a cat, wow."]
    data = write_stories(tmp_path / "s.txt", stories)
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'tok'}", "--held_out=0.2"])
    out = capsys.readouterr().out
    assert "read 8 stories, 48 words" in out
    # held out: "lily saw a zebra" + "the zebra saw a cat wow": 10 words, unknown: zebra, the, zebra, wow
    assert "[UNK] rate on 2 held-out stories: 40.00% of 10 words" in out
    vocab = AutoTokenizer.from_pretrained(tmp_path / "tok").get_vocab()
    assert "number" in vocab and "zebra" not in vocab and "wow" not in vocab


def test_max_stories_reads_only_the_first_ones(tmp_path, capsys):
    data = write_stories(tmp_path / "s.txt", ["Lily saw a cat.", "Tom saw a dog.", "Sue saw a zebra."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--max_stories=2"])
    assert "read 2 stories, 8 words" in capsys.readouterr().out
    vocab = AutoTokenizer.from_pretrained(tmp_path).get_vocab()
    assert {"lily", "tom", "cat", "dog"} <= set(vocab) and "sue" not in vocab and "zebra" not in vocab


def test_min_frequency_drops_rare_words(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["Lily saw a cat.", "Lily saw a dog.", "Lily saw a cat!"])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--min_frequency=2"])
    vocab = AutoTokenizer.from_pretrained(tmp_path).get_vocab()
    assert {"lily", "saw", "a", "cat", "."} <= set(vocab) and "dog" not in vocab and "!" not in vocab


def test_lowercase_false_keeps_case(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["Lily saw lily.", "Lily saw a cat."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'cased'}", "--held_out=0",
                               "--lowercase=false"])
    cased = AutoTokenizer.from_pretrained(tmp_path / "cased")
    assert {"Lily", "lily"} <= set(cased.get_vocab())
    assert cased.convert_ids_to_tokens(cased("Lily saw lily")["input_ids"]) == ["Lily", "saw", "lily"]
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path / 'folded'}", "--held_out=0"])
    folded = AutoTokenizer.from_pretrained(tmp_path / "folded")
    assert "Lily" not in folded.get_vocab()
    assert folded.convert_ids_to_tokens(folded("Lily saw LILY")["input_ids"]) == ["lily", "saw", "lily"]


def test_vocab_size_caps_the_vocabulary_at_the_most_frequent_words(tmp_path):
    data = write_stories(tmp_path / "s.txt", ["a a a a b b b c c d."])
    run_main(train_tokenizer, [f"--dataset={data}", f"--tokenizer_dir={tmp_path}", "--held_out=0",
                               "--vocab_size=6"])
    vocab = AutoTokenizer.from_pretrained(tmp_path).get_vocab()
    assert len(vocab) == 6 and {"a", "b", "c"} <= set(vocab) and "d" not in vocab
