"""train_tokenizer.py: what it reads, holds out, keeps in the vocabulary, prints and saves."""

import re

import pytest
from transformers import AutoTokenizer

import corpus
import train_tokenizer
from conftest import run_main
from lmkit.settings import UserError
from lmkit.text import SPACE_MARK as M
from lmkit.text import detokenize
from pilish.tokens import letters_in, token_text


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


def test_vocabulary_has_every_word_length(tokenizer_dir):
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
    # the next command carries the options this one was given
    assert out.rstrip().endswith(f"next: python train_model.py --dataset={corpus_file} --tokenizer_dir={tmp_path}")


def test_next_command_names_only_what_differs_from_the_default(corpus_file, tmp_path, capsys):
    from lmkit.settings import next_command
    assert next_command("x.py", DATASET=("roneneldan/TinyStories", "roneneldan/TinyStories"),
                        TOKENIZER_DIR=("tokenizer", "tokenizer")) == "python x.py"
    assert next_command("x.py", MODEL_DIR=("my model", "model")) == "python x.py '--model_dir=my model'"


@pytest.mark.parametrize("arg, message", [("--vocab_size=2", "VOCAB_SIZE"), ("--vocab_size=3", "VOCAB_SIZE"),
                                          ("--held_out=1", "HELD_OUT"), ("--held_out=-0.1", "HELD_OUT")])
def test_bad_sizes_are_errors(corpus_file, tmp_path, arg, message):
    with pytest.raises(UserError, match=message):
        run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path}", arg])


# ---------------------------------------------------------------- what the settings do, counted by hand

def write_stories(path, stories):
    return str(corpus.write_txt(path, stories))


def words_in(tokenizer):
    """The vocabulary's entries as text, without the space mark (a word "▁lily" reads "lily")."""
    return {token_text(token) for token in tokenizer.get_vocab()}


def tokens_of(tokenizer, text):
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


def test_the_tokenizer_learns_from_the_train_split(corpus_file, tmp_path, monkeypatch):
    """A hub dataset has several splits: the tokenizer reads "train", as train_model.py does."""
    splits = []
    real = train_tokenizer.load_stories

    def recording(source, split="train"):
        splits.append(split)
        return real(source, split=split)

    monkeypatch.setattr(train_tokenizer, "load_stories", recording)
    run_main(train_tokenizer, [f"--dataset={corpus_file}", f"--tokenizer_dir={tmp_path / 'tok'}", "--held_out=0.05"])
    assert splits == ["train"]
