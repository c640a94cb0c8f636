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


def test_tiny_vocab_size_is_an_error(corpus_file, tmp_path):
    with pytest.raises(UserError, match="VOCAB_SIZE"):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path}", "--vocab_size=2"])
