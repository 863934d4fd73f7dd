"""Find WordNet 3.0 for METEOR's synonym stage without downloading anything.

NLTK fetches its `wordnet` corpus from the network, which self-hosted machines often
cannot reach. The same WordNet 3.0 database ships in Debian/Ubuntu as `wordnet-base`
(`/usr/share/wordnet`), minus one small index NLTK also reads: `lexnames`, the fixed
table of the 45 lexicographer file names (wndb(5WN), lexnames(5WN)). We serve that
table from memory. Search order: $OPENRFT_WORDNET_DIR, NLTK's own corpus, the Debian
directory. When none exists METEOR runs with exact and stem matching only, and says so.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# WordNet 3.0's lexicographer files, numbered 00..44 (lexnames(5WN)); category 1=noun,
# 2=verb, 3=adjective, 4=adverb.
_LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1),
    ("noun.feeling", 1), ("noun.food", 1), ("noun.group", 1), ("noun.location", 1),
    ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1),
    ("noun.plant", 1), ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1),
    ("noun.relation", 1), ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1),
    ("noun.time", 1), ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2),
    ("verb.communication", 2), ("verb.competition", 2), ("verb.consumption", 2),
    ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2),
    ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2),
    ("verb.weather", 2), ("adj.ppl", 3),
)
LEXNAMES_TEXT = "".join(f"{n:02d}\t{name}\t{c}\n" for n, (name, c) in enumerate(_LEXNAMES))

_REQUIRED = ("index.noun", "data.noun", "index.verb", "data.verb", "index.adj", "data.adj")

_lock = threading.Lock()
_loaded: dict[str, Any] = {}


class NoSynonyms:
    """Stands in for a WordNet reader when none is installed: no word has synonyms."""

    def synsets(self, word: str, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _is_wordnet_dir(path: Path) -> bool:
    return all((path / name).is_file() for name in _REQUIRED)


def _reader_for_dir(root: Path) -> Any:
    """An NLTK WordNet reader over a WordNet 3.0 database directory."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class DirectoryWordNetReader(WordNetCorpusReader):
        """Serves the `lexnames` table when the directory lacks it (Debian's package)."""

        def open(self, file: str) -> Any:  # noqa: A003 (NLTK's method name)
            if file == "lexnames" and not (root / "lexnames").is_file():
                return io.StringIO(LEXNAMES_TEXT)
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping to NLTK's downloadable corpus: only multilingual (OMW) data needs it,
            and looking for it fails offline."""
            return None

    # NLTK only reads corpora under its data path (nltk.pathsec): register the directory.
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available"
        warnings.simplefilter("ignore")
        return DirectoryWordNetReader(str(root), None)


def _nltk_corpus() -> Any | None:
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            return None
    from nltk.corpus import wordnet

    return wordnet


def _locate() -> tuple[Any, str]:
    configured = os.environ.get("OPENRFT_WORDNET_DIR")
    if configured:
        path = Path(configured)
        if not _is_wordnet_dir(path):
            logger.warning("OPENRFT_WORDNET_DIR=%s holds no WordNet database; ignored", path)
        else:
            return _reader_for_dir(path), str(path)
    corpus = _nltk_corpus()
    if corpus is not None:
        return corpus, "nltk_data"
    if _is_wordnet_dir(DEBIAN_WORDNET_DIR):
        return _reader_for_dir(DEBIAN_WORDNET_DIR), str(DEBIAN_WORDNET_DIR)
    logger.warning(
        "WordNet not found (install Debian's wordnet-base or set OPENRFT_WORDNET_DIR); "
        "METEOR runs without its synonym stage"
    )
    return NoSynonyms(), ""


def load_wordnet() -> tuple[Any, str]:
    """(reader, source) once per process; source is '' when synonyms are unavailable."""
    with _lock:
        if "reader" not in _loaded:
            _loaded["reader"], _loaded["source"] = _locate()
        return _loaded["reader"], _loaded["source"]
