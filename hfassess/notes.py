"""Clinical-note consumers: a prescription parser (for the GDMT engine) and MiniLM embeddings.

Why a parser beside embeddings: the paper feeds prescriptions to BERT for a risk score, but a
rule engine needs the actual drug, dose and frequency. The parser is deterministic and
tolerant to the notes' paraphrases, brand names, "from X mg to Y mg" titrations (the *to* dose is
current), ARNI strengths (24/26, 49/51, 97/103 -> 50, 100, 200 mg) and one-letter typos in drug
names (closest known name, similarity >= 0.8).
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from hfassess.gdmt import ALIASES, LADDERS, NON_PILLAR

KNOWN = sorted(set(LADDERS) | set(NON_PILLAR) | set(ALIASES), key=len, reverse=True)
_ALL_WORDS = {w for name in KNOWN for w in re.split(r"[\s/-]+", name)}
FREQ_PATTERNS = [
    (r"\b(?:tid|t\.i\.d\.?|three times (?:a day|daily))\b", "tid"),
    (r"\b(?:bid|b\.i\.d\.?|twice (?:a day|daily))\b", "bid"),
    (r"\b(?:qd|q\.d\.?|od|once (?:a day|daily)|daily|every morning|nightly)\b", "qd"),
]
_NUM = r"(\d+(?:\.\d+)?)"
ARNI_STRENGTH = {(24, 26): 50.0, (49, 51): 100.0, (97, 103): 200.0}


def _canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    return name


def _find_drug(clause: str) -> tuple[str, int] | None:
    """Known drug in a clause: exact (longest name first), else the closest word n-gram.

    An exact hit that is part of a longer name ("valsartan" in a misspelt "sacubitril/valsartan")
    yields to a fuzzy match of the longer name.
    """
    low = clause.lower()
    exact = None
    for name in KNOWN:
        m = re.search(r"(?<![a-z])" + re.escape(name) + r"(?![a-z])", low)
        if m:
            exact = (name, m.end())
            break
    if exact and not any(exact[0] in longer and longer != exact[0] for longer in KNOWN):
        return _canonical(exact[0]), exact[1]
    fuzzy = _fuzzy(low)
    if fuzzy and (exact is None or (exact[0] in fuzzy[0] and len(fuzzy[0]) > len(exact[0]))):
        return _canonical(fuzzy[0]), fuzzy[1]
    return (_canonical(exact[0]), exact[1]) if exact else None


def _fuzzy(low: str) -> tuple[str, int] | None:
    words = [(m.group(0), m.end()) for m in re.finditer(r"[a-z][a-z/-]+", low)]
    best: tuple[float, str, int] | None = None
    for n in (2, 1):
        for i in range(len(words) - n + 1):
            gram = " ".join(w for w, _ in words[i:i + n])
            if len(gram) < 6:
                continue
            for name in KNOWN:
                r = difflib.SequenceMatcher(None, gram, name).ratio()
                if r >= 0.8 and (best is None or r > best[0]):
                    best = (r, name, words[i + n - 1][1])
    return (best[1], best[2]) if best else None


def _dose(text: str) -> float | None:
    m = re.search(rf"from\s+{_NUM}(?:\s*/\s*{_NUM})?\s*(?:mg)?\s+to\s+{_NUM}(?:\s*/\s*{_NUM})?\s*mg", text)
    if m:
        a, b = m.group(3), m.group(4)
        return _strength(float(a), float(b)) if b else float(a)
    m = re.search(rf"{_NUM}\s*/\s*{_NUM}\s*mg", text)
    if m:
        return _strength(float(m.group(1)), float(m.group(2)))
    m = re.search(rf"{_NUM}\s*mg", text)
    return float(m.group(1)) if m else None


def _strength(a: float, b: float) -> float:
    """ARNI tablet strength a/b mg (sacubitril/valsartan) -> total mg per dose."""
    return ARNI_STRENGTH.get((int(a), int(b)), a + b)


def _frequency(text: str, drug: str) -> str:
    for pat, freq in FREQ_PATTERNS:
        if re.search(pat, text):
            return freq
    ladder = LADDERS.get(drug)
    return ladder.frequency if ladder else "qd"


def parse_medications(note: str) -> list[dict[str, Any]]:
    """Drug, dose_mg and frequency for each heart-failure drug mentioned with a dose."""
    meds: list[dict[str, Any]] = []
    seen: set[str] = set()
    for clause in re.split(r"[;\n]|\.\s", note):
        low = clause.lower()
        if not re.search(r"\d\s*mg", low):
            continue
        found = _find_drug(low)
        if not found:
            continue
        drug, end = found
        dose = _dose(low[end:]) or _dose(low)
        if dose is None or drug in seen:
            continue
        seen.add(drug)
        meds.append({"drug": drug, "dose_mg": dose, "frequency": _frequency(low, drug)})
    return meds


def embed_notes(notes: list[str], device: str = "cpu"):
    """384-d unit vectors from all-MiniLM-L6-v2 (mean pooling), via the shared SentenceEmbedder."""
    from papersuite.models import SentenceEmbedder

    return SentenceEmbedder("minilm-l6-v2", device=device).encode(list(notes))
