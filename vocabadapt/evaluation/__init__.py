"""Evaluation building blocks; `vocabadapt.evaluate` composes them into the stage and the CLI command.

bpb         bits per byte (and token perplexity) with sliding windows
pubmedqa    PubMedQA PQA-L loading, scoring, metrics and bootstrap intervals
efficiency  tokenizer efficiency and the vocabulary's parameter and compute cost
checklist   the six verification checks of a run
"""
