"""pilish.rules: what each word length spells, the digit sources, the verifier, and whether a
vocabulary can spell the digits at all."""

import re

import mpmath
import pytest

from pilish.rules import (NAMED_DIGITS, PilishError, Verification, check_spellable, digits_of_word, format_verification,
                          get_digits, verify)

PI_SENTENCE = "How I need a drink, alcoholic in nature, after the heavy lectures involving quantum mechanics!"


# ----------------------------------------------------------------------------------------------
# Rules and digit sources


def test_digits_of_word():
    assert [digits_of_word(n, "basic") for n in (0, 1, 9, 10, 11, 12)] == ["", "1", "9", "0", None, None]
    assert [digits_of_word(n, "standard") for n in (0, 1, 9, 10, 11, 12)] == ["", "1", "9", "0", "11", "12"]
    with pytest.raises(PilishError):
        digits_of_word(3, "loose")


def test_named_digit_sources():
    assert get_digits("pi", 50) == "31415926535897932384626433832795028841971693993751"
    assert get_digits("e", 30) == "271828182845904523536028747135"
    assert get_digits("phi", 30) == "161803398874989484820458683436"
    assert get_digits("sqrt2", 20) == "14142135623730950488"
    assert [get_digits(name, 1) for name in NAMED_DIGITS] == ["3", "2", "1", "1"]


def test_ten_thousand_digits_of_pi_are_right():
    # (how fast: bench/, not here; a timed assert in a unit test flakes on a busy machine)
    digits = get_digits("pi", 10000)
    assert len(digits) == 10000 and set(digits) <= set("0123456789")
    # Independent check by integer arithmetic: floor(pi * 10^9999) ends with the same digits.
    with mpmath.workdps(10100):
        scaled = int(mpmath.floor(mpmath.pi * mpmath.mpf(10) ** 9999))
    assert int(digits[-12:]) == scaled % 10**12
    # The 10000 digits (leading 3 included) end at decimal 9999; decimals 9997-10000 are the famous 5678.
    assert digits.endswith("7567")
    assert get_digits("pi", 10001).endswith("5678")


def test_literal_digits_and_bad_sources():
    assert get_digits("1234", 10) == "1234"
    assert get_digits("1234", 2) == "12"
    for bad in ("12a", "", "tau", " "):
        with pytest.raises(PilishError, match="pi, e, phi, sqrt2"):
            get_digits(bad, 5)
    for bad_n in (0, -3):
        with pytest.raises(PilishError):
            get_digits("pi", bad_n)


# ----------------------------------------------------------------------------------------------
# Verifier


def test_verify_the_classic_sentence():
    verification = verify(PI_SENTENCE, get_digits("pi", 15), "basic")
    assert (verification.matched, verification.total, verification.ok) == (15, 15, True)
    assert verification.departure is None
    assert format_verification(verification, "pi") == "✓ 15/15 digits of pi"


def test_verify_reports_the_first_departure():
    verification = verify(PI_SENTENCE.replace("drink", "drinks"), get_digits("pi", 15), "basic")
    assert (verification.matched, verification.ok) == (4, False)
    assert '"drinks"' in verification.departure and "6 letters" in verification.departure
    assert verification.departure == 'word 5 "drinks" has 6 letters but digit 5 of the sequence is 5'
    assert format_verification(verification, "pi") == f"✗ 4/15 digits of pi: {verification.departure}"


def test_verify_text_too_short_and_too_long():
    short = verify(PI_SENTENCE, get_digits("pi", 20), "basic")
    assert (short.matched, short.ok, short.departure) == (15, False, "text ends after 15 of 20 digits")
    long = verify(PI_SENTENCE + " And more.", get_digits("pi", 15), "basic")
    assert (long.matched, long.total, long.ok) == (15, 15, False)
    assert "2 extra words" in long.departure and '"And"' in long.departure


def test_verify_long_words_under_the_two_rule_sets():
    # "thunderstorm" has 12 letters, "extraordinary" 13, "everything" 10 (spells 0).
    text = "A thunderstorm, extraordinary everything."
    assert verify(text, "112130", "standard").ok
    basic = verify(text, "112130", "basic")
    assert basic.matched == 1 and "basic" in basic.departure and '"thunderstorm"' in basic.departure
    wrong = verify(text, "113130", "standard")
    assert wrong.matched == 1 and "digits 2-3 of the sequence are 13" in wrong.departure
    cut = verify("a thunderstorm", "11", "standard")
    assert cut.matched == 1 and "only 1 digit is left" in cut.departure
    assert verify("everything", "0", "basic").ok


def test_verify_ignores_punctuation_and_zero_letter_tokens():
    assert verify('" how , i ! need ... a " 42', "3141", "basic").ok


# ----------------------------------------------------------------------------------------------
# Can the vocabulary spell the digits?


def test_check_spellable():
    every_length = set(range(1, 11))
    check_spellable(every_length, get_digits("pi", 200), "basic")
    with pytest.raises(PilishError, match="no words of 7 or 10 letters") as raised:
        check_spellable(every_length - {7, 10}, get_digits("pi", 50), "basic")
    assert "a tokenizer trained on more text" in str(raised.value)
    with pytest.raises(PilishError, match="no words of 3 letters"):
        check_spellable({1, 4}, "1134", "standard")


def test_standard_can_spell_what_basic_cannot():
    # No 1-letter words, but 11- and 13-letter words cover every "1".
    lengths = {3, 4, 11, 13}
    with pytest.raises(PilishError, match="no words of 1 letter,"):
        check_spellable(lengths, "3114", "basic")
    check_spellable(lengths, "3114", "standard")
    check_spellable(lengths, "31134", "standard")


def test_named_sources_in_any_case_and_with_spaces():
    assert get_digits("PI", 5) == get_digits(" Pi ", 5) == "31415" and get_digits("SQRT2", 3) == "141"
    with pytest.raises(PilishError, match="whole number of at least 1, got 2.0"):
        get_digits("pi", 2.0)
    with pytest.raises(PilishError, match="unknown digit source 31"):
        get_digits(31, 2)


def test_a_digit_string_must_be_a_non_empty_string_of_digits():
    from pilish.rules import check_digit_string
    check_digit_string("0123456789", "DIGITS")
    for bad in ("", "12 3", "１２", 123, None, "3.14"):
        with pytest.raises(PilishError, match=f"DIGITS must be a non-empty string of the digits 0-9, got {re.escape(repr(bad))}"):
            check_digit_string(bad, "DIGITS")


def test_one_extra_word_is_singular_and_two_plural():
    one = verify("how i need a drink", "3141", "basic")
    assert one.departure == '1 extra word after all 4 digits, starting with word 5 "drink"'
    two = verify("how i need a big drink", "3141", "basic")
    assert two.departure == '2 extra words after all 4 digits, starting with word 5 "big"'
    assert not one.ok and one.departed and one.matched == 4


def test_a_word_without_letters_spells_nothing():
    """"²" and "Ⅻ" are word characters to the regular expression but no letters: skipped, like punctuation."""
    assert verify("how ² i need Ⅻ", "314", "basic").ok


def test_a_text_that_ends_early_still_counts_every_digit():
    short = verify("how i need", "31415", "basic")
    assert short == Verification(3, 5, False, "text ends after 3 of 5 digits")
    assert format_verification(short, "pi") == "✗ 3/5 digits of pi: text ends after 3 of 5 digits"
