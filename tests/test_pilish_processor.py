"""pilish.processor: the Pilish mask called directly, its stopping criteria, and constrained generation
with a tiny randomly initialised GPT-2 (greedy, sampling, beam search; both rules; sliding window)."""

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList, StoppingCriteriaList

from conftest import tiny_gpt2
from lmkit.text import SPACE_MARK as M
from lmkit.tokenizer import build_decoder
from pilish.processor import FALLBACK_SCORE, PilishLogitsProcessor, PilishStoppingCriteria
from pilish.rules import RULES, PilishError, check_spellable, digits_of_word, format_verification, get_digits, verify
from pilish.tokens import WORD_RE, letters_in, token_text


# A fixed-size toy vocabulary: special tokens, punctuation, then random words.
SPECIALS = ["<|endoftext|>", "[UNK]", "[PAD]"]
EOS, UNK, PAD = 0, 1, 2
PUNCTUATION_TOKENS = [".", ",", "!", "?", '"', "'"]
MARK_TOKENS = set(PUNCTUATION_TOKENS) | {M + '"', M + "'"}  # an opening quote carries the space mark
N_WORDS = 63
VOCAB_SIZE = len(SPECIALS) + len(PUNCTUATION_TOKENS) + N_WORDS  # 72
MAX_WORD_LENGTH = 13


def make_vocab(rng: random.Random, lengths: list[int]) -> list[str]:
    """Specials, punctuation, then one distinct random lowercase word per entry of `lengths`; the
    first one-letter words are "a" and "i", the only ones the tables take as words (any other single
    letter is a token the mask never offers)."""
    vocab = SPECIALS + PUNCTUATION_TOKENS
    seen = set(vocab)
    for length in lengths:
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
        if length == 1 and {"a", "i"} - seen:
            word = min({"a", "i"} - seen)
        while word in seen:
            word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
        seen.add(word)
        vocab.append(word)
    return vocab


@st.composite
def vocabularies(draw) -> list[str]:
    """Random vocabularies of VOCAB_SIZE tokens in which every word length 1..13 occurs."""
    # Lengths and letters come from a seeded Random rather than drawn lists: drawing ~400 values
    # trips Hypothesis's "large base example" health check and buys little in shrinking.
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    extra_lengths = [rng.randint(1, MAX_WORD_LENGTH) for _ in range(N_WORDS - MAX_WORD_LENGTH)]
    lengths = list(range(1, MAX_WORD_LENGTH + 1)) + extra_lengths
    rng.shuffle(lengths)
    return make_vocab(rng, lengths)


digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=30)


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_gpt2(VOCAB_SIZE, n_positions=256, n_embd=16, n_layer=1, bos_token_id=EOS, eos_token_id=EOS,
                     pad_token_id=PAD).eval()


def make_processor(vocab, digits, rules, punctuation=True, **kwargs):
    return PilishLogitsProcessor(vocab, digits, rules, allow_punctuation=punctuation,
                                 banned_ids=[EOS, UNK, PAD], end_ids=[EOS], **kwargs)


def generate(model, processor, prompt, max_new_tokens, **kwargs):
    return model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        logits_processor=LogitsProcessorList([processor]),
        stopping_criteria=StoppingCriteriaList([PilishStoppingCriteria(processor)]),
        max_new_tokens=max_new_tokens,
        pad_token_id=PAD,
        eos_token_id=EOS,
        **kwargs,
    )


def marked(vocab):
    """`vocab` as train_tokenizer's tokenizer writes it: ▁ before every word, an opening quote (▁")
    and a closing one ('), and a comma after a space (▁,), which no Pilish text may use."""
    def mark(token):
        if token in SPECIALS or token in (".", "!", "?", "'"):
            return token
        return M + token
    return [mark(token) for token in vocab]


def check_generated(vocab, token_ids, digits, rules, punctuation):
    """Assert one generated row is exactly Pilish for `digits`; return its words."""
    tokens = [vocab[i] for i in token_ids]
    position, previous, words = 0, None, []
    for index, token in enumerate(tokens):
        if position < len(digits):
            assert token not in SPECIALS, f"special token {token!r} before the last digit: {tokens}"
            if token in MARK_TOKENS:
                assert punctuation, f"punctuation {token!r} with punctuation off: {tokens}"
                assert index > 0, f"text starts with punctuation: {tokens}"
                # a mark follows a word; only a quote may follow a mark; nothing follows a quote
                is_quote = token_text(token) in "\"'"
                assert (previous == "mark" if is_quote else previous == "word"), f"{token!r} after a {previous}: {tokens}"
                previous = "quote" if is_quote else "mark"
            else:
                assert WORD_RE.fullmatch(token_text(token)), token
                position += len(digits_of_word(letters_in(token), rules))
                previous = "word"
                words.append(token)
        else:
            # After the last digit: at most one closing mark or end token, then only padding.
            after = [t for t in tokens[index:] if t != "[PAD]"]
            assert len(after) <= 1 and all(t in (".", "!", "?", "<|endoftext|>") for t in after), tokens
            if not punctuation:
                assert all(t in ("<|endoftext|>",) for t in after), tokens
            break
    text = " ".join(t for t in tokens if t not in SPECIALS)
    if any(t.startswith(M) for t in tokens):  # the text as the tokenizer's decoder writes it
        text = build_decoder().decode([t for t in tokens if t not in SPECIALS])
    verification = verify(text, digits, rules)
    assert verification.ok, f"{format_verification(verification, 'the digits')} in {text!r}"
    return words


# ----------------------------------------------------------------------------------------------
# The mask, called directly

HAND_VOCAB = SPECIALS + PUNCTUATION_TOKENS + [
    "a", "i", "fix", "tree", "don't", "co-op", "abcdefghijk", "abcdefghijklm", "3rd", "#", ";", "o'",
]


def ids(*tokens):
    return [HAND_VOCAB.index(token) for token in tokens]


def allowed_tokens(processor, *tokens):
    """The tokens the processor allows after [<|endoftext|>] + tokens (a one-token prompt)."""
    input_ids = torch.tensor([[EOS] + ids(*tokens)])
    scores = processor(input_ids, torch.zeros(1, len(HAND_VOCAB)))
    return {HAND_VOCAB[i] for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()}


def test_mask_is_exactly_the_next_digit():
    processor = make_processor(HAND_VOCAB, "3141", "basic", prompt_length=1)
    free = {".", ",", "!", "?", '"', "'", ";"}
    assert allowed_tokens(processor) == {"fix"}  # no punctuation first
    marks = free - {'"', "'"}
    assert allowed_tokens(processor, "fix") == {"a", "i"} | marks  # no quote straight after a word
    assert allowed_tokens(processor, "fix", ",") == {"a", "i", '"', "'"}  # only a quote after a mark
    assert allowed_tokens(processor, "fix", ",", '"') == {"a", "i"}  # a word after a quote
    assert allowed_tokens(processor, "fix", "a") == {"tree", "don't", "co-op"} | marks
    assert allowed_tokens(processor, "fix", "a", "tree", "i") == {".", "!", "?", "<|endoftext|>"}
    no_punctuation = make_processor(HAND_VOCAB, "3141", "basic", punctuation=False, prompt_length=1)
    assert allowed_tokens(no_punctuation, "fix") == {"a", "i"}
    assert allowed_tokens(no_punctuation, "fix", "a", "tree", "i") == {"<|endoftext|>"}


def test_mask_offers_two_digit_words_under_standard():
    standard = make_processor(HAND_VOCAB, "1113", "standard", punctuation=False, prompt_length=1)
    assert allowed_tokens(standard) == {"a", "i", "abcdefghijk"}
    assert allowed_tokens(standard, "abcdefghijk") == {"a", "i", "abcdefghijklm"}
    assert allowed_tokens(standard, "abcdefghijk", "abcdefghijklm") == {"<|endoftext|>"}
    basic = make_processor(HAND_VOCAB, "1113", "basic", punctuation=False, prompt_length=1)
    assert allowed_tokens(basic) == {"a", "i"}


def test_mask_never_walks_into_a_dead_end():
    # Lengths 1, 4, 11, 13 but no 3: in "1134" the 3 must be covered by the 13-letter word.
    vocab = [t for t in HAND_VOCAB if t not in ("fix",)]
    with pytest.raises(PilishError, match="no words of 3 letters"):
        PilishLogitsProcessor(vocab, "1134", "basic", prompt_length=1, banned_ids=[EOS, UNK, PAD])
    processor = PilishLogitsProcessor(vocab, "1134", "standard", prompt_length=1, allow_punctuation=False,
                                      banned_ids=[EOS, UNK, PAD], end_ids=[EOS])

    def allowed(*tokens):
        input_ids = torch.tensor([[EOS] + [vocab.index(t) for t in tokens]])
        return {vocab[i] for i in processor.allowed(input_ids)[0].nonzero().flatten().tolist()}

    assert allowed() == {"a", "i"}  # "11" would leave "34", which nothing spells
    assert allowed("a") == {"abcdefghijklm"}  # "1" would leave "34" too
    assert allowed("a", "abcdefghijklm") == {"tree", "don't", "co-op"}
    # A row already in an impossible state (forced here) has nothing allowed: its scores are left
    # as they were, so sampling never sees an all -inf row.
    stuck = torch.tensor([[EOS, vocab.index("abcdefghijk")]])
    assert not processor.allowed(stuck).any()
    scores = torch.randn(1, len(vocab))
    assert torch.equal(processor(stuck, scores), scores)


def test_mask_sees_through_the_space_mark():
    """With the tokenizer's marked tokens, the mask is the plain one's, marked; a mark after a space
    that is no quote (▁,) is never offered."""
    vocab = marked(HAND_VOCAB)
    processor = make_processor(vocab, "3141", "basic", prompt_length=1)

    def allowed(*tokens):
        input_ids = torch.tensor([[EOS] + [vocab.index(t) for t in tokens]])
        scores = processor(input_ids, torch.zeros(1, len(vocab)))
        return {vocab[i] for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()}

    assert allowed() == {M + "fix"}
    assert allowed(M + "fix") == {M + "a", M + "i", ".", "!", "?"}  # not ▁, nor ▁; (after a space)
    assert allowed(M + "fix", ".") == {M + "a", M + "i", M + '"', "'"}
    assert allowed(M + "fix", ".", M + '"') == {M + "a", M + "i"}
    assert allowed(M + "fix", M + "a") == {M + "tree", M + "don't", M + "co-op", ".", "!", "?"}
    assert allowed(M + "fix", M + "a", M + "tree", M + "i") == {".", "!", "?", "<|endoftext|>"}


@settings(max_examples=25, deadline=None)
@given(lengths=st.sets(st.integers(1, 13), min_size=1), digits=digit_strings, seed=st.integers(0, 2**16))
def test_random_walks_through_the_mask_always_finish(lengths, digits, seed):
    """Whatever allowed token is taken, a spellable digit string is always completed."""
    rng = random.Random(seed)
    vocab = make_vocab(rng, sorted(lengths) * 2)
    try:
        processor = make_processor(vocab, digits, "standard", prompt_length=1)
    except PilishError:
        with pytest.raises(PilishError):
            check_spellable(lengths, digits, "standard")
        return
    stopping = PilishStoppingCriteria(processor)
    input_ids = torch.full((3, 1), EOS)
    stopped = torch.zeros(3, dtype=torch.bool)
    for _ in range(3 * len(digits) + 1):
        allowed = processor.allowed(input_ids)
        assert allowed.any(dim=1).all()
        choices = torch.tensor([rng.choice(row.nonzero().flatten().tolist()) for row in allowed])
        choices[stopped] = PAD  # as generate() pads rows that have stopped
        input_ids = torch.cat([input_ids, choices[:, None]], dim=1)
        stopped |= stopping(input_ids, None)
        if stopped.all():
            break
    assert processor.done(input_ids).all()
    for row in input_ids[:, 1:].tolist():
        check_generated(vocab, row, digits, "standard", punctuation=True)


def test_fallback_when_an_earlier_processor_banned_every_allowed_token():
    processor = make_processor(HAND_VOCAB, "3141", "basic", prompt_length=1)
    input_ids = torch.tensor([[EOS], [EOS]])
    scores = torch.zeros(2, len(HAND_VOCAB))
    scores[0, ids("fix")] = float("-inf")  # e.g. no_repeat_ngram_size banned the only 3-letter word
    processed = processor(input_ids, scores)
    assert processed[0, ids("fix")].item() == FALLBACK_SCORE
    assert processed[1, ids("fix")].item() == 0
    assert torch.isinf(processed[:, [i for i in range(len(HAND_VOCAB)) if i != ids("fix")[0]]]).all()


def test_wider_model_vocabulary_and_bad_arguments():
    processor = make_processor(HAND_VOCAB, "3141", "basic", prompt_length=1)
    processed = processor(torch.tensor([[EOS]]), torch.zeros(1, len(HAND_VOCAB) + 5))
    assert torch.isinf(processed[0, len(HAND_VOCAB):]).all()
    with pytest.raises(PilishError):
        processor(torch.tensor([[EOS]]), torch.zeros(1, len(HAND_VOCAB) - 1))
    with pytest.raises(PilishError):
        make_processor(HAND_VOCAB, "31a", "basic")
    with pytest.raises(PilishError):
        make_processor(HAND_VOCAB, "3141", "sloppy")
    with pytest.raises(PilishError):
        make_processor(HAND_VOCAB, "3141", "basic", start_digit=5)


def test_positions_count_digits_per_row_and_per_beam():
    processor = make_processor(HAND_VOCAB, "31134", "standard", prompt_length=2,
                               start_digit=torch.tensor([0, 1]))
    # Prompt tokens (the first two) never count; punctuation counts 0, an 11-letter word 2.
    input_ids = torch.tensor([[EOS, ids("fix")[0]] + ids("fix", ",", "abcdefghijk"),
                              [EOS, ids("fix")[0]] + ids("a", "abcdefghijk", "tree")])
    assert processor.positions(input_ids).tolist() == [3, 5]
    assert processor.done(input_ids).tolist() == [False, True]
    # Beam search and num_return_sequences repeat each prompt's row next to itself.
    assert processor.positions(input_ids.repeat_interleave(3, dim=0)).tolist() == [3, 3, 3, 5, 5, 5]
    stop = PilishStoppingCriteria(processor)(input_ids, None)
    assert stop.dtype == torch.bool and stop.shape == (2,)
    assert stop.tolist() == [False, False]  # row 2 still takes its closing mark
    closed = torch.cat([input_ids, torch.tensor([[EOS], ids(".")])], dim=1)
    assert PilishStoppingCriteria(processor)(closed, None).tolist() == [False, True]


# ----------------------------------------------------------------------------------------------
# Generation with a tiny random GPT-2

MODES = {
    "greedy": dict(do_sample=False),
    "sampling": dict(do_sample=True, top_k=20, temperature=0.9),
    "beam": dict(do_sample=False, num_beams=3),
    "beam-no-repeat": dict(do_sample=False, num_beams=3, no_repeat_ngram_size=2),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("punctuation", [True, False], ids=["punctuation", "words-only"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vocab=vocabularies(), digits=digit_strings, batch=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_generated_text_is_exactly_pilish(tiny_model, mode, rules, punctuation, vocab, digits, batch, seed):
    torch.manual_seed(seed)
    processor = make_processor(vocab, digits, rules, punctuation, prompt_length=1)
    prompt = torch.full((batch, 1), EOS)
    output = generate(tiny_model, processor, prompt, 3 * len(digits) + 2, **MODES[mode])
    assert output.shape[0] == batch
    for row in output[:, 1:].tolist():
        check_generated(vocab, row, digits, rules, punctuation)


@pytest.mark.parametrize("mode", ["sampling", "beam"])
@pytest.mark.parametrize("rules", RULES)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vocab=vocabularies(), digits=digit_strings, seed=st.integers(0, 2**16))
def test_generated_text_with_marked_tokens_is_exactly_pilish(tiny_model, mode, rules, vocab, digits, seed):
    """The same, with the tokenizer's ▁-marked words and quotes: the decoded text is exact Pilish."""
    torch.manual_seed(seed)
    vocab = marked(vocab)
    processor = make_processor(vocab, digits, rules, True, prompt_length=1)
    output = generate(tiny_model, processor, torch.full((2, 1), EOS), 3 * len(digits) + 2, **MODES[mode])
    for row in output[:, 1:].tolist():
        check_generated(vocab, row, digits, rules, punctuation=True)


def test_standard_rules_do_use_long_words(tiny_model):
    vocab = make_vocab(random.Random(1), list(range(1, 14)) * 4 + [1] * 11)
    digits = "1112131111"
    long_words = 0
    for seed in range(4):
        torch.manual_seed(seed)
        processor = make_processor(vocab, digits, "standard", punctuation=False, prompt_length=1)
        output = generate(tiny_model, processor, torch.full((3, 1), EOS), 3 * len(digits) + 2, do_sample=True)
        for row in output[:, 1:].tolist():
            words = check_generated(vocab, row, digits, "standard", punctuation=False)
            long_words += sum(letters_in(word) > 10 for word in words)
    assert long_words > 0


def test_beam_search_survives_no_repeat_ngram_banning_everything(tiny_model):
    # Only one 1-letter word: "a a" may not repeat, yet "1111111" needs nothing but "a".
    vocab = make_vocab(random.Random(2), list(range(2, 14)) * 4 + [1] + [2] * 14)
    for kwargs in (dict(num_beams=3), dict(do_sample=True), dict(do_sample=False)):
        processor = make_processor(vocab, "1111111", "basic", punctuation=False, prompt_length=1)
        prompt = torch.full((2, 1), EOS)
        output = generate(tiny_model, processor, prompt, 23, no_repeat_ngram_size=2, **kwargs)
        for row in output[:, 1:].tolist():
            check_generated(vocab, row, "1111111", "basic", punctuation=False)


@pytest.mark.parametrize("rules", RULES)
def test_sliding_window_carries_the_position_across_windows(tiny_model, rules):
    """Generate 4 windows' worth of digits, each call seeing only the last WINDOW tokens."""
    window = 8
    digits = get_digits("pi", 4 * window)
    vocab = make_vocab(random.Random(3), list(range(1, 14)) * 4 + [3] * 11)
    torch.manual_seed(0)
    rows = [[EOS], [EOS]]  # full token history of each row
    spelled = [0, 0]
    for _ in range(20):
        active = [i for i, row in enumerate(rows) if not finished(vocab, row, spelled[i], digits)]
        if not active:
            break
        context = torch.tensor([rows[i][-window:] for i in active])
        processor = make_processor(vocab, digits, rules, prompt_length=context.shape[1],
                                   start_digit=torch.tensor([spelled[i] for i in active]))
        output = generate(tiny_model, processor, context, window, do_sample=True)
        positions = processor.positions(output).tolist()
        for row_index, i in enumerate(active):
            rows[i] += [t for t in output[row_index, context.shape[1]:].tolist() if t != PAD]
            spelled[i] = positions[row_index]
    for row in rows:
        assert finished(vocab, row, len(digits), digits)
        check_generated(vocab, row[1:], digits, rules, punctuation=True)


def finished(vocab, row, spelled, digits):
    """All digits spelled and the closing mark taken."""
    return spelled >= len(digits) and vocab[row[-1]] in (".", "!", "?", "<|endoftext|>")


def test_a_mark_pays_for_the_word_it_puts_off():
    # uniform scores: 2 of the 20 tokens are allowed words ("a", "i"), so W = 2/20 and each allowed
    # mark's score drops by log(10) while the words keep theirs
    processor = make_processor(HAND_VOCAB, "3141", "basic", prompt_length=1)
    input_ids = torch.tensor([[EOS] + ids("fix")])
    scores = processor(input_ids, torch.zeros(1, len(HAND_VOCAB)))[0]
    assert scores[HAND_VOCAB.index("a")] == 0 and scores[HAND_VOCAB.index("i")] == 0
    assert torch.isclose(scores[HAND_VOCAB.index(",")], torch.log(torch.tensor(2 / len(HAND_VOCAB))))
    plain = PilishLogitsProcessor(HAND_VOCAB, "3141", "basic", prompt_length=1, punctuation_lookahead=False,
                                  banned_ids=[EOS, UNK, PAD], end_ids=[EOS])
    assert plain(input_ids, torch.zeros(1, len(HAND_VOCAB)))[0][HAND_VOCAB.index(",")] == 0
    # after the last digit nothing is owed: the closing marks keep their scores
    done = processor(torch.tensor([[EOS] + ids("fix", "a", "tree", "i")]), torch.zeros(1, len(HAND_VOCAB)))[0]
    assert done[HAND_VOCAB.index(".")] == 0


def test_stopping_waits_for_the_closing_mark():
    processor = make_processor(HAND_VOCAB, "3141", "basic", prompt_length=1)
    stopping = PilishStoppingCriteria(processor)
    rows = [["fix", "a", "tree"], ["fix", "a", "tree", "i"], ["fix", "a", "tree", "i", "."],
            ["fix", "a", "tree", "i", "<|endoftext|>"]]
    assert [bool(stopping(torch.tensor([[EOS] + ids(*row)]))[0]) for row in rows] == [False, False, True, True]
    words_only = make_processor(HAND_VOCAB, "3141", "basic", punctuation=False, prompt_length=1)
    assert bool(PilishStoppingCriteria(words_only)(torch.tensor([[EOS] + ids("fix", "a", "tree", "i")]))[0])


def test_a_ten_letter_word_never_stands_for_the_digits_10():
    # under the standard rules only words of 11 or more letters spell two digits: 10 letters spell 0
    vocab = SPECIALS + PUNCTUATION_TOKENS + ["a", "abcdefghij", "abc"]
    processor = make_processor(vocab, "1013", "standard", punctuation=False, prompt_length=1)
    allowed = processor.allowed(torch.tensor([[EOS]]))[0]
    assert {vocab[i] for i in allowed.nonzero().flatten().tolist()} == {"a"}
    after_a = processor.allowed(torch.tensor([[EOS, vocab.index("a")]]))[0]
    assert {vocab[i] for i in after_a.nonzero().flatten().tolist()} == {"abcdefghij"}


def test_the_last_token_of_the_vocabulary_is_read_as_what_it_is():
    """The token before the next one decides which marks may follow; the vocabulary's last id included."""
    vocab = [token for token in HAND_VOCAB if token != ","] + [","]
    processor = make_processor(vocab, "3141", "basic", prompt_length=1)
    input_ids = torch.tensor([[EOS, vocab.index("fix"), vocab.index(",")]])
    scores = processor(input_ids, torch.zeros(1, len(vocab)))
    assert {vocab[i] for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()} == {"a", "i", '"', "'"}


def test_a_processor_built_without_a_prompt_length_counts_from_the_first_token():
    vocab = make_vocab(random.Random(5), [3, 1, 4, 1, 5] * 3 + list(range(1, MAX_WORD_LENGTH + 1)) * 3)
    processor = make_processor(vocab, "31415", "basic")
    three = next(i for i, token in enumerate(vocab) if token.isalpha() and len(token) == 3)
    one = next(i for i, token in enumerate(vocab) if token.isalpha() and len(token) == 1)
    assert processor.positions(torch.tensor([[three, one]])).tolist() == [2]
