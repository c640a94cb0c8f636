"""Pilish: English whose word lengths spell the digits of a number such as pi.

The modules, in the order a text flows through them:

  tokens      token kinds and letter counting (no torch)
  rules       the rule sets, the digit sources and the verifier (no torch)
  vocabulary  the per-token tables of one tokenizer, built once and shared
  plan        for each digit position, the word lengths that may come next
  processor   the LogitsProcessor that masks every token breaking the Pilish, and the stopping criteria
  prior       the writing prior: whole-text rules and the training data's n-grams
  lookahead   a cost for a word after which the next digit can only be spelled badly ("the" before a 1)
  writing     `write`: the window loop that drives `model.generate`, and its `WriteOptions`
  fluency     the measure of how much a text reads like the stories (no torch, no model)

Import what you use from its module (`from pilish.writing import write`): this file imports
nothing, so checking a text needs neither torch nor transformers.
"""
