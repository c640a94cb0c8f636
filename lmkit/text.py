"""Tokens and text: the special tokens, the space mark, and turning token ids back into readable text.

The word-level tokenizer (lmkit/tokenizer.py) cuts text into whole words and single marks, each
word carrying SPACE_MARK in front. These helpers read a prompt the way the tokenizer does and
decode ids the way every Hugging Face tool does, less the leading space.
"""

import sys

EOT = "<|endoftext|>"  # separates stories, in the data set's txt files and in the token stream
UNK = "[UNK]"
PAD = "[PAD]"
SPECIAL_TOKENS = [PAD, UNK, EOT]
# The tokenizer's mark for "a space comes before this token", as in SentencePiece: every word
# carries it, and it tells an opening quote from a closing one (lmkit/tokenizer.py).
SPACE_MARK = "\u2581"  # ▁


def split_words(tokenizer, text):
    """The tokens of `text` as the tokenizer cuts them (words with their SPACE_MARK), and their ids
    ([UNK] where unknown), as `tokenizer(text)` reads it: a special token typed in the text
    ("<|endoftext|>") is that token, and the text between special tokens is cut piece by piece.

    Showing these words (through `detokenize`'s `words_before`), rather than decoding the ids, keeps
    a prompt's unknown words visible.
    """
    import re
    backend = tokenizer.backend_tokenizer
    special = sorted(tokenizer.all_special_tokens, key=len, reverse=True)
    words = []
    for piece in re.split("(" + "|".join(map(re.escape, special)) + ")", text) if special else [text]:
        if piece in special:
            words.append(piece)
        elif piece:
            words += [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(piece))]
    return words, tokenizer.convert_tokens_to_ids(words)


def special_tokens_in(tokenizer, text):
    """The special tokens typed in `text` ("<|endoftext|>"), which the tokenizer reads as themselves."""
    special = set(tokenizer.all_special_ids)
    return [token for token, token_id in zip(*split_words(tokenizer, text)) if token_id in special
            and token_id != tokenizer.unk_token_id]


def detokenize(tokenizer, ids, words_before=()):
    """Token ids to readable text, special tokens dropped: what `tokenizer.decode(ids,
    skip_special_tokens=True)` gives (the decoder saved in tokenizer.json, which every Hugging Face
    tool uses too), less the space before the first word.

    `words_before` (e.g. a prompt's words from `split_words`) are decoded in front as they are, so
    a prompt word the vocabulary lacks reads as itself, not as [UNK].
    """
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids if int(i) not in special])
    return tokenizer.convert_tokens_to_string([*words_before, *tokens]).lstrip()


def unknown_words(tokenizer, text):
    """The words of `text` that the vocabulary lacks (the model reads each as [UNK])."""
    words, ids = split_words(tokenizer, text)
    return [tokenizer.convert_tokens_to_string([word]).strip()
            for word, token_id in zip(words, ids) if token_id == tokenizer.unk_token_id]


def warn_unknown_words(tokenizer, text):
    """Say on stderr which words of a prompt the model cannot read, and which special tokens it holds."""
    missing = list(dict.fromkeys(unknown_words(tokenizer, text)))  # each once, in order
    if missing:
        print(f"warning: not in the vocabulary, so the model reads them as {UNK}: {', '.join(missing)}",
              file=sys.stderr)
    special = special_tokens_in(tokenizer, text)
    if special:
        ends = f"; {EOT} ends a story, so what follows it starts a new one" if EOT in special else ""
        print(f"warning: the prompt holds {', '.join(special)}, which the model reads as special tokens{ends}",
              file=sys.stderr)
