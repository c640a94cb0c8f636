"""lmkit.text: a prompt's words as the tokenizer cuts them, ids back to readable text, unknown words."""

import pytest
from transformers import AutoTokenizer

from lmkit.text import SPACE_MARK as M
from lmkit.text import UNK, detokenize, split_words, unknown_words, warn_unknown_words


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_split_words_cuts_as_the_tokenizer_does(tokenizer):
    words, ids = split_words(tokenizer, 'Tom said, "Go!"')
    assert words == [M + "tom", M + "said", ",", M + '"', M + "go", "!", '"']
    assert ids == tokenizer('Tom said, "Go!"')["input_ids"] and tokenizer.unk_token_id not in ids


def test_detokenize_shows_a_prompts_unknown_words(tokenizer):
    words, ids = split_words(tokenizer, 'Tom said, "Zyzzyva!"')
    assert tokenizer.unk_token_id in ids
    assert detokenize(tokenizer, [], words) == 'tom said, "zyzzyva!"'
    assert detokenize(tokenizer, tokenizer(" and a cat.")["input_ids"], words) == 'tom said, "zyzzyva!" and a cat.'
    assert detokenize(tokenizer, ids) == 'tom said, "!"'  # skip_special_tokens drops the [UNK] itself


def test_detokenize_drops_special_tokens_and_the_first_space(tokenizer):
    ids = tokenizer("the cat was happy.")["input_ids"]
    assert tokenizer.decode(ids) == " the cat was happy."
    assert detokenize(tokenizer, [tokenizer.eos_token_id, *ids, tokenizer.pad_token_id]) == "the cat was happy."


def test_unknown_words_are_the_ones_the_model_reads_as_unk(tokenizer, capsys):
    assert unknown_words(tokenizer, "the zyzzyva saw a Qwerty cat") == ["zyzzyva", "qwerty"]
    assert unknown_words(tokenizer, 'Tom said, "Go!"') == []
    warn_unknown_words(tokenizer, "the zyzzyva saw a cat")
    assert capsys.readouterr().err == f"warning: not in the vocabulary, so the model reads them as {UNK}: zyzzyva\n"
    warn_unknown_words(tokenizer, "the cat")
    assert capsys.readouterr().err == ""


def test_several_unknown_words_are_listed_in_order(tokenizer, capsys):
    warn_unknown_words(tokenizer, "the zyzzyva saw a qwerty and a blorp")
    assert capsys.readouterr().err.endswith(f"{UNK}: zyzzyva, qwerty, blorp\n")
