"""The prompt grammar shared by benchmark prompts, short captions and the prompt parser.

Sentences follow GenEval's templates (docs/benchmarks.md §1.1):

* ``a photo of <NP>``                      — single_object, colors, counting
* ``a photo of <NP> and <NP>``             — two_object, color_attr (include order = word order)
* ``a photo of <NP_A> <relation> <NP_B>``  — position: include[0] = B, include[1] = A with
  ``position: [relation, 0]``

with ``<NP> = (a | an | two | three | …) [colour] shape[s]``.
"""

from __future__ import annotations

from typing import Final

from evals.shapes.metadata import RELATIONS, Clause, clause
from evals.shapes.palette import COLORS, PLURALS, SHAPES

PREFIX: Final = "a photo of "

NUMBER_WORDS: Final[dict[int, str]] = {
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}
_WORD_NUMBERS: Final = {word: n for n, word in NUMBER_WORDS.items()}
_SINGULARS: Final = {plural: shape for shape, plural in PLURALS.items()}


def article(word: str) -> str:
    """ "an" before a vowel ("an orange circle"), else "a"."""
    return "an" if word[:1] in "aeiou" else "a"


def noun_phrase(shape: str, count: int, color: str | None = None) -> str:
    """E.g. ``a square``, ``an orange circle``, ``three blue triangles``."""
    words = [] if color is None else [color]
    if count == 1:
        words.append(shape)
        return f"{article(words[0])} {' '.join(words)}"
    if count not in NUMBER_WORDS:
        raise ValueError(f"no number word for count {count}")
    words.append(PLURALS[shape])
    return f"{NUMBER_WORDS[count]} {' '.join(words)}"


def clause_phrase(item: Clause) -> str:
    """The noun phrase of one include clause."""
    return noun_phrase(item["class"], item["count"], item.get("color"))


def sentence(include: list[Clause]) -> str:
    """The prompt text of one or two include clauses (inverse of `parse_sentence`)."""
    if len(include) == 1:
        return PREFIX + clause_phrase(include[0])
    if len(include) == 2:
        first, second = include
        if "position" in second:
            relation, index = second["position"]
            if index != 0 or relation not in RELATIONS:
                raise ValueError(f"unsupported position {second['position']!r}")
            return f"{PREFIX}{clause_phrase(second)} {relation} {clause_phrase(first)}"
        return f"{PREFIX}{clause_phrase(first)} and {clause_phrase(second)}"
    raise ValueError("prompts have one or two include clauses")


def parse_noun_phrase(words: list[str]) -> Clause:
    """Parse ``[det, (colour), noun]`` into a clause; raises ValueError on anything else."""
    if len(words) not in (2, 3):
        raise ValueError(f"not a noun phrase: {' '.join(words)!r}")
    det, noun = words[0], words[-1]
    color = words[1] if len(words) == 3 else None
    if color is not None and color not in COLORS:
        raise ValueError(f"unknown colour {color!r}")
    if det in ("a", "an"):
        if noun not in SHAPES:
            raise ValueError(f"unknown singular shape {noun!r}")
        if det != article(words[1]):
            raise ValueError(f"wrong article {det!r} before {words[1]!r}")
        return clause(noun, 1, color)
    if det in _WORD_NUMBERS:
        if noun not in _SINGULARS:
            raise ValueError(f"expected a plural shape after {det!r}, got {noun!r}")
        return clause(_SINGULARS[noun], _WORD_NUMBERS[det], color)
    raise ValueError(f"unknown determiner {det!r}")


def parse_sentence(text: str) -> list[Clause]:
    """Parse a prompt into its include clauses (see the module docstring for the grammar)."""
    if not text.startswith(PREFIX):
        raise ValueError(f"prompt must start with {PREFIX!r}: {text!r}")
    words = text[len(PREFIX) :].split(" ")
    if "and" in words:
        cut = words.index("and")
        return [parse_noun_phrase(words[:cut]), parse_noun_phrase(words[cut + 1 :])]
    for relation in RELATIONS:
        rel_words = relation.split(" ")
        for start in range(1, len(words) - len(rel_words)):
            if words[start : start + len(rel_words)] == rel_words:
                target = parse_noun_phrase(words[start + len(rel_words) :])
                subject = parse_noun_phrase(words[:start])
                subject["position"] = (relation, 0)
                return [target, subject]
    return [parse_noun_phrase(words)]
