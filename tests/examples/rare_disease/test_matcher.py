"""The non-LLM pipeline: longest-match string matching (negation-blind) + hypergeom_d."""

from __future__ import annotations

from openrft.examples.rare_disease.baseline import HypergeomRanker
from openrft.examples.rare_disease.hpo_data import HPOData
from openrft.examples.rare_disease.matcher import PhenotypeMatcher, TextPipeline, rank_of, words
from openrft.examples.rare_disease.reports import Synonym

SYNONYMS = {
    "HP:0000011": [Synonym("Leaf", True)],  # a one-word synonym inside a longer name
    "HP:0000042": [Synonym("Five-leaf B", False)],
    "HP:0000006": [Synonym("Dominant", False)],  # inheritance: not a phenotype, ignored
}


def test_words() -> None:
    assert words("Five-leaf B, twice!") == ("five", "leaf", "b", "twice")


def test_longest_match_names_synonyms_and_negation_blindness(mini: HPOData) -> None:
    matcher = PhenotypeMatcher(mini, SYNONYMS)
    text = ("The patient has a leaf three and a leaf, as well as five-leaf B. "
            "There was no B leaf two. Dominant. A LEAF THREE again.")
    # "a leaf three" beats "leaf" (longest first); "a leaf," is not a phrase but "leaf" is;
    # the negated B leaf two is matched like any other (the pipeline ignores negation);
    # a repeated finding is listed once; non-phenotype synonyms are not in the dictionary.
    assert matcher.find(text) == ["HP:0000021", "HP:0000011", "HP:0000042", "HP:0000032"]
    assert matcher.find("Nothing here.") == []


def test_pipeline_ranks_the_matched_terms(mini: HPOData) -> None:
    ranker = HypergeomRanker(mini, ["OMIM:100", "OMIM:200", "OMIM:400"])
    pipeline = TextPipeline(PhenotypeMatcher(mini, SYNONYMS), ranker)
    # Leaf = A leaf one (HP:0000011) and B leaf one: only OMIM:100 (GENEA) holds both.
    genes = pipeline.rank("We noted leaf and b leaf one.", max_genes=3)
    assert genes[0] == "GENEA" and len(genes) == 3
    assert rank_of("GENEA", genes) == 1 and rank_of("NOPE", genes) is None


def test_fitting_terms_and_multi_gene_diseases(mini: HPOData) -> None:
    # OMIM:300 has two genes (GENEC, GENED): both score, and both fit B leaf three.
    ranker = HypergeomRanker(mini, ["OMIM:100", "OMIM:300"])
    scores = ranker.gene_scores(["HP:0000033"])
    assert scores["GENEC"] == scores["GENED"] > scores["GENEA"] == 0.0
    assert ranker.fitting_terms("GENED", ["HP:0000033", "HP:0000012"]) == ["HP:0000033"]
