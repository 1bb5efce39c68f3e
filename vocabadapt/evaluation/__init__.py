"""Evaluation building blocks; `suite` composes them for the evaluate stage and `vocabadapt eval`.

bpb            bits per byte (and token perplexity): lm-eval's rolling windows, shared forward passes
pubmedqa       PubMedQA PQA-L loading, lm-eval's pubmedqa scoring (acc, acc_bytes), metrics, bootstrap
lm_eval_tasks  any lm-evaluation-harness task on a loaded model (evaluation.lm_eval; optional extra)
efficiency     tokenizer efficiency and the vocabulary's parameter and compute cost
checklist      the six verification checks of a run
suite          every model side by side, the run summary, `vocabadapt eval`
"""
