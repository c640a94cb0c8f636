"""pilish.tokens: letter counting, words in free text, and what each kind of token is to the Pilish."""

from lmkit.text import SPACE_MARK as M
from pilish.tokens import WORD_RE, is_punctuation_token, is_quote_token, is_word_token, letters_in, token_text


def test_letters_in():
    assert letters_in("don't") == letters_in(M + "don't") == 4
    assert letters_in(M + '"') == 0
    assert letters_in("lily's") == 5
    assert letters_in("co-op") == 4
    assert letters_in(",") == 0
    assert letters_in("3rd") == 2
    assert letters_in("") == 0


def test_word_re_finds_words_in_free_text():
    assert WORD_RE.findall("Don't stop—the well-known cat’s 3 toys, ok?") == [
        "Don't", "stop", "the", "well-known", "cat’s", "toys", "ok"]


def test_token_text_drops_only_a_leading_space_mark():
    assert token_text(M + "don't") == "don't" and token_text(M + '"') == '"'
    assert token_text("don't") == "don't" and token_text(M) == "" and token_text("a" + M) == "a" + M


def test_token_kinds_look_past_the_space_mark():
    assert is_word_token(M + "don't") and is_word_token("co-op") and is_word_token(M + "a")
    assert not any(is_word_token(token) for token in (M + "3rd", "[UNK]", "<|endoftext|>", M + "'", "o'"))
    assert is_quote_token(M + '"') and is_quote_token("'") and not is_quote_token(M) and not is_quote_token(",")
    # a mark may carry the space mark only when it is a quote (an opening one): "wait . what" reads oddly
    assert is_punctuation_token(",") and is_punctuation_token(M + '"') and is_punctuation_token("'")
    assert not is_punctuation_token(M + ",") and not is_punctuation_token("#") and not is_punctuation_token(M)


def test_an_empty_token_is_nothing():
    assert not is_punctuation_token("") and not is_quote_token("") and not is_word_token("")
    assert not is_punctuation_token(M) and not is_quote_token(M)
