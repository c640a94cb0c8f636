"""How well the tokenizer covers and reproduces real TinyStories text.

    python -m bench.tokenizer_quality                          # trains one on the sample's train.txt
    python -m bench.tokenizer_quality --tokenizer_dir=tokenizer  # measure a saved tokenizer instead

Reports the vocabulary size, the entries spent on space-mark variants (a token whose text without
its leading ▁ is a token too, e.g. `▁"` and `"`), the [UNK] rate of VALID_FILE's words, and the
round trip: the share of VALID_FILE's paragraphs without [UNK] for which `tokenizer.decode(
tokenizer(x).input_ids)`, the decoder every Hugging Face tool uses, equals the normalized x
(whitespace runs aside). Appends the table to BENCHMARKS.md.
"""

TRAIN_FILE = ""  # stories to train the tokenizer on ("" = the bundled sample, data/tinystories-sample)
VALID_FILE = ""  # paragraphs to measure on ("" = the bundled sample's validation stories)
TOKENIZER_DIR = ""  # a saved tokenizer to measure ("" = train one with train_tokenizer.py's defaults)
NUM_PARAGRAPHS = 300  # the round trip's first row uses the first N paragraphs without [UNK]; the second all
SHOW_MISMATCHES = 5  # print this many paragraphs that do not round-trip
RECORD = True  # append the results to BENCHMARKS.md

import re
import tempfile

from bench.support import data_file, report, run_project_script
from lmkit.data import stories_in_txt
from lmkit.settings import UserError, run_script
from lmkit.text import SPACE_MARK
from lmkit.tokenizer import build_normalizer, unk_rate


def squeeze(text):
    return re.sub(r"\s+", " ", text).strip()


def main(config):
    from transformers import AutoTokenizer

    valid_path = data_file(config.VALID_FILE, "validation")
    work = tempfile.TemporaryDirectory(prefix="bench-tokenizer-")
    folder = config.TOKENIZER_DIR
    if not folder:
        folder = work.name
        run_project_script("train_tokenizer.py", f"--dataset={data_file(config.TRAIN_FILE, 'train')}",
                           f"--tokenizer_dir={folder}", "--held_out=0")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = tokenizer.get_vocab()
    variants = sorted(token for token in vocab if token.startswith(SPACE_MARK) and token[1:] in vocab)

    paragraphs = [story["text"] for story in stories_in_txt([valid_path])]
    unk, words = unk_rate(tokenizer.backend_tokenizer, paragraphs)
    normalizer = build_normalizer()  # the readable normalization, without space marks
    known, exact, mismatches = 0, [], []
    for text, ids in zip(paragraphs, tokenizer(paragraphs, add_special_tokens=False)["input_ids"]):
        if tokenizer.unk_token_id in ids:
            continue
        known += 1
        same = squeeze(tokenizer.decode(ids)) == squeeze(normalizer.normalize_str(text))
        exact.append(same)
        if not same and len(mismatches) < config.SHOW_MISMATCHES:
            mismatches.append((normalizer.normalize_str(text), tokenizer.decode(ids)))
    if not exact:
        raise UserError(f"no paragraph of {valid_path} is free of [UNK]")
    first = exact[:config.NUM_PARAGRAPHS]
    for expected, got in mismatches:
        print(f"normalized: {squeeze(expected)}\ndecoded:    {squeeze(got)}\n")

    headers = ["measure", "value"]
    rows = [
        ["vocabulary", f"{len(vocab):,}"],
        ["entries spent on space-mark variants", f"{len(variants)}" + (f" ({' '.join(variants)})" if variants else "")],
        [f"[UNK] rate, {valid_path.name} words", f"{unk:.2%} of {words:,}"],
        [f"round trip, first {len(first)} paragraphs without [UNK]", f"{sum(first) / len(first):.1%}"],
        [f"round trip, all {known:,} paragraphs without [UNK]", f"{sum(exact) / len(exact):.1%}"],
    ]
    notes = [f"tokenizer: {config.TOKENIZER_DIR or 'train_tokenizer.py on ' + data_file(config.TRAIN_FILE, 'train').name + ', all stories (--held_out=0)'}; "
             "round trip: tokenizer.decode(tokenizer(x).input_ids) == the normalized x, whitespace runs aside"]
    report(__file__, headers, rows, notes, enabled=config.RECORD)
    work.cleanup()


if __name__ == "__main__":
    run_script(main, globals())
