"""WordNet 3.0 read through NLTK from Debian's ``wordnet-base`` files, never downloaded.

NLTK's ``WordNetCorpusReader`` expects the layout of NLTK's own download, which Debian's
package lacks in two places: there is no ``lexnames`` file (the fixed list of the 45
lexicographer files, given below from the WordNet 3.0 documentation, lexnames(5WN)) and no
``index.sense`` (NLTK reads it only to map between WordNet versions, which we never do).
``load_wordnet`` adapts to both and returns a plain NLTK reader (``synsets``, ``lemmas``, ...).

The directory comes from ``RAMPART_WORDNET_DIR``, WordNet's own ``WNSEARCHDIR``, or the
standard places (Debian's ``/usr/share/wordnet`` first). ``nltk`` is imported only here, only
when WordNet is loaded: ``import rampart`` never imports it.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from rampart.errors import DataLoadError

WORDNET_ENV = "RAMPART_WORDNET_DIR"
# Debian / Ubuntu (wordnet-base), Princeton's default install, NLTK's unzipped download.
STANDARD_DIRS = (
    "/usr/share/wordnet",
    "/usr/local/WordNet-3.0/dict",
    "/usr/share/nltk_data/corpora/wordnet",
    "/usr/local/share/nltk_data/corpora/wordnet",
)
REQUIRED_FILES = tuple(
    f"{kind}.{pos}" for pos in ("noun", "verb", "adj", "adv") for kind in ("index", "data")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))
INSTALL_HINT = (
    "install Debian's WordNet with 'sudo apt-get install wordnet-base' (files in "
    f"/usr/share/wordnet) or point {WORDNET_ENV} at a WordNet 3.0 dict directory"
)

# The lexicographer file numbers of WordNet 3.0 (lexnames(5WN)): number, name, category
# (1 noun, 2 verb, 3 adjective, 4 adverb). Synsets in data.* refer to these by number.
LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2),
    ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2),
    ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2),
    ("adj.ppl", 3),
)


class WordNetUnavailableError(DataLoadError):
    """WordNet's files or NLTK (needed to read them) are missing or unreadable."""


def _missing(directory: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (directory / name).is_file()]


def find_wordnet_dir(directory: str | Path | None = None) -> Path:
    """The WordNet dict directory to read: ``directory``, else ``$RAMPART_WORDNET_DIR``, else
    ``$WNSEARCHDIR``, else the first standard place that holds WordNet's files.

    A directory named explicitly (argument or environment) must hold the files; it is never
    silently replaced by another one.
    """
    named: tuple[str, str] | None = None
    if directory is not None:
        named = (str(directory), "the directory given")
    else:
        for env in (WORDNET_ENV, "WNSEARCHDIR"):
            if os.environ.get(env):
                named = (os.environ[env], f"${env}")
                break
    if named is not None:
        folder = Path(named[0]).expanduser()
        missing = _missing(folder)
        if missing:
            raise WordNetUnavailableError(
                f"no WordNet 3.0 database in {folder} ({named[1]}): missing "
                f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; {INSTALL_HINT}."
            )
        return folder
    for candidate in STANDARD_DIRS:
        if not _missing(Path(candidate)):
            return Path(candidate)
    raise WordNetUnavailableError(
        f"WordNet is not installed (looked in {', '.join(STANDARD_DIRS)}); {INSTALL_HINT}."
    )


def wordnet_missing_reason(directory: str | Path | None = None) -> str | None:
    """Why WordNet cannot be loaded (files or NLTK missing), or None when it can."""
    try:
        find_wordnet_dir(directory)
        _import_reader()
    except WordNetUnavailableError as exc:
        return str(exc)
    return None


def _import_reader() -> Any:
    try:
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise WordNetUnavailableError(
            "WordNet synonyms need NLTK to read WordNet; install it with "
            "pip install 'rampart[text]' (NLTK downloads nothing: the data comes from "
            "Debian's wordnet-base)."
        ) from exc
    return WordNetCorpusReader


def _reader_class() -> type:
    base = _import_reader()

    class DebianWordNetReader(base):  # type: ignore[misc, valid-type]
        """NLTK's reader, serving ``lexnames`` from ``LEXNAMES`` when the directory lacks it
        and skipping the WordNet-version mapping (which needs ``index.sense``)."""

        def open(self, file: str) -> Any:
            if file == "lexnames" and not (Path(self.root) / "lexnames").is_file():
                return io.StringIO(
                    "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))
                )
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            # Only the Open Multilingual WordNet needs this mapping; we read English 3.0.
            return None

    return DebianWordNetReader


_CACHE: dict[Path, Any] = {}
_LOCK = threading.Lock()


def load_wordnet(directory: str | Path | None = None) -> Any:
    """An NLTK WordNet reader over the files in ``find_wordnet_dir(directory)`` (cached, so
    the ~1 s index load happens once per directory and process).

    Raises ``WordNetUnavailableError`` naming the install step when the files or NLTK are
    missing.
    """
    folder = find_wordnet_dir(directory).resolve()
    with _LOCK:
        if folder in _CACHE:
            return _CACHE[folder]
        reader_class = _reader_class()
        import nltk.data

        # NLTK (3.9+) only opens files under its data path: allow this one directory.
        if str(folder) not in [str(p) for p in nltk.data.path]:
            nltk.data.path.append(str(folder))
        try:
            with warnings.catch_warnings():
                # "The multilingual functions are not available": expected, we read English.
                warnings.simplefilter("ignore", UserWarning)
                reader = reader_class(str(folder), None)
        except (OSError, ValueError, AssertionError, IndexError) as exc:
            raise WordNetUnavailableError(
                f"cannot read the WordNet database in {folder}: {exc}; reinstall it "
                f"('sudo apt-get install --reinstall wordnet-base') or point {WORDNET_ENV} "
                "at a WordNet 3.0 dict directory."
            ) from exc
        _CACHE[folder] = reader
        return reader
