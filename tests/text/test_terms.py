from helpers import TEXT, train_bpe_tokenizer, write_jsonl
from vocabadapt.config import Config, TokenizerTrainSpec
from vocabadapt.run.layout import RunLayout
from vocabadapt.text.terms import add_terms, count_words, mine_terms, rank_terms
from vocabadapt.text.tokenizers import train_tokenizer


def _mine(tmp_path, **term_mining):
    """Mine terms the way the tokenize stage does: from the run's training split into terms/terms.txt."""
    cfg = Config.model_validate({"term_mining": term_mining})
    layout = RunLayout(tmp_path)
    return mine_terms(layout.corpus_texts("train"), cfg.term_mining, layout.terms)


def test_count_words_counts_occurrences_and_documents():
    wc = count_words(["heparin and heparin", "aspirin, heparin", "IL-6 and 1999"])
    counts, df, n = wc.counts, wc.doc_freq, wc.documents
    assert n == 3
    assert counts["heparin"] == 3 and df["heparin"] == 2
    assert counts["IL-6"] == 1  # inner hyphen kept
    assert "1999" not in counts  # numbers are not terms


def test_word_regex_keeps_inner_hyphens_and_apostrophes():
    wc = count_words(["Crohn's disease, interleukin-6 -- IL-6's end- 'quoted' 2-3 a_b"])
    assert set(wc.counts) == {"Crohn's", "disease", "interleukin-6", "IL-6's", "end", "quoted", "a_b"}


def test_counting_memory_is_capped_and_frequent_words_survive_with_a_stated_error():
    # 30 documents: "heparin" in each, plus 20 one-off words each; a cap of 50 distinct words forces pruning.
    docs = [" ".join(["heparin"] + [f"rare{i}x{j}" for j in range(20)]) for i in range(30)]
    exact = count_words(docs)
    capped = count_words(docs, max_words=50)
    assert exact.max_undercount == 0 and len(exact.counts) == 1 + 30 * 20
    assert len(capped.counts) <= 50 + 21  # never more than the cap plus one document's words
    assert capped.max_undercount >= 1
    # heparin is kept, and short of its exact count by no more than the stated bound
    assert exact.counts["heparin"] - capped.max_undercount <= capped.counts["heparin"] <= exact.counts["heparin"]
    assert capped.counts["heparin"] == 30  # never at or below a median, so never dropped: exact
    assert capped.doc_freq["heparin"] == 30


def test_min_frequency_honoured_in_both_modes():
    wc = count_words(["alpha beta beta", "alpha gamma", "alpha delta"])
    counts, df, n = wc.counts, wc.doc_freq, wc.documents
    for tfidf in (True, False):
        terms = rank_terms(counts, df, n, top_k=10, min_frequency=2, use_tfidf=tfidf)
        assert {t.text for t in terms} == {"alpha", "beta"}


def test_tfidf_prefers_concentrated_words_over_ubiquitous_ones():
    # 'the' and 'cocaine' both occur 4 times; 'the' in 4 documents, 'cocaine' in 1.
    docs = ["the cocaine cocaine cocaine cocaine", "the x", "the y", "the z"]
    wc = count_words(docs)
    counts, df, n = wc.counts, wc.doc_freq, wc.documents
    by_tfidf = [t.text for t in rank_terms(counts, df, n, 2, 1, use_tfidf=True)]
    assert by_tfidf[0] == "cocaine"
    by_count = rank_terms(counts, df, n, 10, 1, use_tfidf=False)
    assert {t.text: t.score for t in by_count}["the"] == 4.0


def test_mine_terms_reads_only_train_and_writes_file(tmp_path):
    write_jsonl(tmp_path / "corpus" / "train.jsonl", ["heparin heparin aspirin", "heparin"])
    write_jsonl(tmp_path / "corpus" / "heldout.jsonl", ["secretword " * 50])
    terms = _mine(tmp_path, top_k=5, min_frequency=1, use_tfidf=False)
    assert [t.text for t in terms] == ["heparin", "aspirin"]
    text = (tmp_path / "terms" / "terms.txt").read_text()
    assert "heparin\t3\t2\t3.000" in text and "secretword" not in text


def test_added_terms_become_single_tokens():
    tok = train_bpe_tokenizer([TEXT], vocab_size=270)
    assert len(tok.encode(" cardiomyopathy", add_special_tokens=False)) > 1
    wc = count_words(["cardiomyopathy " * 5])
    counts, df, n = wc.counts, wc.doc_freq, wc.documents
    before = len(tok)
    added = add_terms(tok, rank_terms(counts, df, n, 10, 1, True))
    assert added == 1 and len(tok) == before + 1
    ids = tok.encode("the cardiomyopathy of the patient", add_special_tokens=False)
    assert len(tok) - 1 in ids
    assert tok.decode(ids) == "the cardiomyopathy of the patient"


def test_train_tokenizer_bpe_and_unigram():
    for kind in ("bpe", "unigram"):
        spec = TokenizerTrainSpec(type=kind, vocab_size=300, special_tokens=["<|endoftext|>", "<|pad|>"])
        tok = train_tokenizer([[TEXT] * 3], spec)
        assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
        assert 0 < len(tok) <= 300
        ids = tok.encode("the patient received aspirin", add_special_tokens=False)
        assert tok.decode(ids).strip() == "the patient received aspirin"


def test_counting_in_worker_processes_equals_counting_in_one():
    docs = [f"heparin dose {i % 7} of aspirin-{i % 3} in patient{i % 11}'s case" for i in range(2500)]
    serial = count_words(docs)
    parallel = count_words(docs, workers=2, batch_size=300)
    assert parallel.documents == serial.documents == 2500
    assert parallel.counts == serial.counts and parallel.doc_freq == serial.doc_freq
    assert parallel.counts["heparin"] == 2500 and parallel.doc_freq["patient3's"] == len(range(3, 2500, 11))
