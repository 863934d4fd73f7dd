"""text_similarity: every metric against values computed by hand from its definition."""

from __future__ import annotations

import math

import pytest

from openrft.graders import build_grader, run
from openrft.graders import wordnet as wordnet_module

HYP = "the cat sat on the mat"
REF = "the cat sat on a mat"


def score(metric: str, text: str, reference: str, **extra) -> float:
    spec = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.reference }}",
        "evaluation_metric": metric,
        **extra,
    }
    result = run(spec, {"output_text": text}, {"reference": reference})
    assert result.ok, result.errors
    assert 0.0 <= result.score <= 1.0
    return result.score


# --- BLEU (sacrebleu sentence BLEU / 100) ------------------------------------------
# HYP vs REF, clipped n-gram precisions: 1-gram 5/6 (second "the" unmatched),
# 2-gram 3/5 (the cat, cat sat, sat on), 3-gram 2/4, 4-gram 1/3; equal lengths so
# brevity penalty 1; BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25.
def test_bleu_by_hand():
    assert score("bleu", HYP, REF) == pytest.approx((1 / 12) ** 0.25, abs=1e-9)


# --- GLEU (NLTK sentence_gleu): min(precision, recall) over all 1..4-grams ---------
# Both sides have 6+5+4+3 = 18 n-grams; matches 5+3+2+1 = 11; GLEU = 11/18.
def test_gleu_by_hand():
    assert score("gleu", HYP, REF) == pytest.approx(11 / 18)


# --- ROUGE F-measure (rouge-score) -------------------------------------------------
# unigram overlap 5 of 6 on each side -> F1 5/6; bigrams 3 of 5 -> 0.6;
# 4-grams 1 of 3 -> 1/3; 5-grams 0 of 2 -> 0; LCS "the cat sat on mat" = 5 -> 5/6.
@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("rouge_1", 5 / 6),
        ("rouge_2", 3 / 5),
        ("rouge_3", 2 / 4),
        ("rouge_4", 1 / 3),
        ("rouge_5", 0.0),
        ("rouge_l", 5 / 6),
    ],
)
def test_rouge_by_hand(metric, expected):
    assert score(metric, HYP, REF) == pytest.approx(expected)


def test_rouge_1_unequal_lengths_precision_recall():
    # hyp "cat sat" vs ref "the cat sat down": overlap 2, P = 2/2, R = 2/4, F = 2PR/(P+R)
    p, r = 1.0, 0.5
    assert score("rouge_1", "cat sat", "the cat sat down") == pytest.approx(2 * p * r / (p + r))


# --- fuzzy_match (rapidfuzz WRatio with default_process, / 100) --------------------
# "kitten" vs "sitting": single tokens of similar length, so WRatio is the Indel
# similarity ratio: LCS("kitten", "sitting") = "ittn" (4), so
# ratio = 2 * 4 / (6 + 7) = 8/13.
def test_fuzzy_match_by_hand_indel_ratio():
    assert score("fuzzy_match", "kitten", "sitting") == pytest.approx(8 / 13)


def test_fuzzy_match_token_set_subset_rule():
    # Every word of HYP appears in REF: WRatio's token-set ratio is 100, scaled by 0.95,
    # which beats the plain ratio 1 - 4/42 (delete "the", insert "a").
    assert score("fuzzy_match", HYP, REF) == pytest.approx(0.95)
    assert 1 - 4 / 42 < 0.95


def test_fuzzy_match_ignores_case_and_punctuation():
    # default_process lowercases, turns punctuation into spaces and trims the ends.
    assert score("fuzzy_match", "Hello World!", "hello world") == 1.0


# --- METEOR (NLTK; alpha 0.9, beta 3, gamma 0.5) -----------------------------------
# score = Fmean * (1 - gamma * (chunks / matches) ** beta),
# Fmean = P * R / (alpha * P + (1 - alpha) * R).
def meteor_by_hand(matches: int, hyp_len: int, ref_len: int, chunks: int) -> float:
    p, r = matches / hyp_len, matches / ref_len
    fmean = p * r / (0.9 * p + 0.1 * r)
    return fmean * (1 - 0.5 * (chunks / matches) ** 3)


def test_meteor_identical_is_not_one_by_definition():
    # 6 matches in one chunk: 1 - 0.5 * (1/6)^3.
    assert score("meteor", HYP, HYP) == pytest.approx(meteor_by_hand(6, 6, 6, 1))


def test_meteor_stem_stage():
    # "cats" ~ "cat" through the Porter stemmer: 3 matches, one chunk.
    assert score("meteor", "the cats sat", "the cat sat") == pytest.approx(
        meteor_by_hand(3, 3, 3, 1)
    )


def test_meteor_synonym_stage_uses_wordnet():
    reader, source = wordnet_module.load_wordnet()
    assert source, "WordNet not found: install Debian's wordnet-base (see docs/graders.md)"
    assert "auto" in {name for s in reader.synsets("car") for name in s.lemma_names()}
    # "car" ~ "auto" are WordNet synonyms: 3 matches in one chunk.
    assert score("meteor", "a fast car", "a fast auto") == pytest.approx(
        meteor_by_hand(3, 3, 3, 1)
    )


def test_meteor_without_wordnet_has_no_synonym_stage(monkeypatch):
    monkeypatch.setitem(wordnet_module._loaded, "reader", wordnet_module.NoSynonyms())
    monkeypatch.setitem(wordnet_module._loaded, "source", "")
    # only "a fast" matches (2 of 3 on each side, one chunk)
    assert score("meteor", "a fast car", "a fast auto") == pytest.approx(
        meteor_by_hand(2, 3, 3, 1)
    )
    result = run(
        {
            "type": "text_similarity",
            "name": "m",
            "input": "a fast car",
            "reference": "a fast auto",
            "evaluation_metric": "meteor",
        },
        {"output_text": ""},
        {},
    )
    assert result.metadata["wordnet"] is None


# --- all metrics: identical -> top, disjoint -> 0 ----------------------------------
LEXICAL = ["bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]


@pytest.mark.parametrize("metric", [*LEXICAL, "fuzzy_match"])
def test_identical_text_scores_one(metric):
    text = "patients with marfan syndrome often have tall stature and long fingers"
    assert score(metric, text, text) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [*LEXICAL, "meteor"])
def test_disjoint_words_score_zero(metric):
    assert score(metric, "alpha beta gamma delta", "one two three four") == 0.0


def test_fuzzy_match_is_character_level():
    # No character in common: the Indel distance is the length of both strings.
    assert score("fuzzy_match", "abcdef", "uvwxyz") == 0.0
    # A shared space is a shared character: LCS 1, ratio 2 * 1 / (7 + 7).
    assert score("fuzzy_match", "abc def", "xyz uvw") == pytest.approx(2 / 14)
    # Shared letters count though no word is shared: LCS("alpha", "alpine") = "alp".
    assert score("fuzzy_match", "alpha", "alpine") == pytest.approx(2 * 3 / (5 + 6))


@pytest.mark.parametrize("metric", ["bleu", "gleu", "meteor", "rouge_1", "fuzzy_match"])
def test_empty_output_scores_zero(metric):
    assert score(metric, "", "a reference answer") == 0.0


def test_pass_threshold_keeps_smooth_score_and_reports_passed():
    spec = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.reference }}",
        "evaluation_metric": "rouge_1",
        "pass_threshold": 0.8,
    }
    high = run(spec, {"output_text": HYP}, {"reference": REF})
    low = run(spec, {"output_text": "cat"}, {"reference": REF})
    assert high.score == pytest.approx(5 / 6) and high.metadata["passed"] is True
    assert low.score == pytest.approx(2 * (1 / 1) * (1 / 6) / (1 + 1 / 6))
    assert low.metadata["passed"] is False


def test_grader_is_reusable_across_threads():
    grader = build_grader(
        {
            "type": "text_similarity",
            "name": "sim",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.reference }}",
            "evaluation_metric": "rouge_2",
        }
    )
    samples = [{"output_text": HYP}] * 20
    results = grader.grade_many(samples, [{"reference": REF}] * 20, max_concurrency=4)
    assert all(math.isclose(r.score, 0.6) for r in results)


def test_meteor_concurrent_grading_matches_sequential():
    # WordNet lookups share file handles: threads must not interleave their reads.
    grader = build_grader(
        {
            "type": "text_similarity",
            "name": "m",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.reference }}",
            "evaluation_metric": "meteor",
        }
    )
    words = ["car", "automobile", "house", "home", "quick", "fast", "big", "dog", "cat"]
    samples = [{"output_text": f"the {a} is {b}"} for a in words for b in words]
    items = [{"reference": f"a {b} was {a}"} for a in words for b in words]
    sequential = [r.score for r in grader.grade_many(samples, items, max_concurrency=1)]
    parallel = [r.score for r in grader.grade_many(samples, items, max_concurrency=8)]
    assert parallel == sequential


# --- cosine (local all-MiniLM-L6-v2) -------------------------------------------------
@pytest.mark.slow  # loads the embedding model (~6 s CPU, more on a busy machine)
def test_cosine_identical_related_unrelated():
    same = score("cosine", "A man is eating food.", "A man is eating food.")
    related = score("cosine", "A man is eating food.", "A man is eating a meal.")
    unrelated = score("cosine", "A man is eating food.", "The stock market fell sharply.")
    assert same == pytest.approx(1.0, abs=1e-4)
    assert related > 0.7
    assert related > unrelated + 0.3
