"""The language-model kit behind the four scripts, one job a module, in the order the data flows:

  settings    the scripts' settings: --name=value overrides, range checks, one-line errors
  data        loading the stories: the hub, a local file or folder, or the bundled sample
  text        the special tokens, the space mark, and ids back to readable text
  tokenizer   building the word-level tokenizer (normalizer, pre-tokenizer, decoder)
  training    packing the stories into blocks, the GPT-2, the Trainer's arguments and guards
  lm_loss     the training loss computed a chunk of tokens at a time, never the full logits
  folders     saved folders and devices: loading a tokenizer or model, the run record, fingerprints
  scoring     the negative log-likelihood of a text under a model alone
"""
