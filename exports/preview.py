"""What an export would hold, before anything is written: the pair count, the share of
prompts kept, how much longer the chosen responses are, and position bias.

Figures (``Tally.figures``):
- ``pairs``: pairs with a chosen side (a both-bad completion is KTO's only), per split too;
- ``prompts_kept``: prompts with at least one pair / ``prompts`` (those with judgments that
  make pairs, and with exported signal pairs when no binarization rule is set);
- ``length_difference``: mean and median of len(chosen) − len(rejected), in characters
  (a reward model learns length when the chosen side is longer on the whole);
- ``chosen_shown_first``: over the pairs whose display is known, the mean share of their
  judgments that showed the chosen response before the rejected one (the assignment's
  screen order, or the item's candidate order when none was stored): far from 0.5 says
  annotators favoured a position, or the order was not randomized.
First-seen bias (an annotator meeting a candidate in an earlier item) is not measured.

The preview streams like the export (exports.pairs.extract): it keeps counters, and the
length differences as a count per distinct difference (bounded by the texts' lengths, not
by the number of pairs) for the exact median.
"""

from collections import Counter

from exports.pairs import Options, check, extract, prompts_with_judgments
from tasks.models import Project


class Tally:
    """The preview's counters, fed one pair at a time (the export's writer keeps one too,
    for the dataset card)."""

    def __init__(self):
        self.pairs = 0
        self.splits: Counter = Counter()
        self.prompts_kept = 0
        self.last_prompt = None
        self.lengths: Counter = Counter()
        self.shown_first = 0.0
        self.placed = 0  # pairs whose display is known

    def add(self, pair) -> None:
        if pair.chosen is None:
            return
        self.pairs += 1
        self.splits[pair.split] += 1
        if pair.prompt.pk != self.last_prompt:  # a prompt's pairs arrive together
            self.prompts_kept += 1
            self.last_prompt = pair.prompt.pk
        self.lengths[len(pair.chosen.text) - len(pair.rejected.text)] += 1
        if pair.shown_first is not None:
            self.shown_first += pair.shown_first
            self.placed += 1

    def figures(self, prompts: int) -> dict:
        return {
            "pairs": self.pairs,
            "splits": dict(sorted(self.splits.items())),
            "prompts": prompts,
            "prompts_kept": self.prompts_kept,
            "prompts_kept_share": round(self.prompts_kept / prompts, 4) if prompts else None,
            "length_difference": {
                "mean": round(sum(d * n for d, n in self.lengths.items()) / self.pairs, 2)
                if self.pairs
                else None,
                "median": _median(self.lengths),
            },
            "chosen_shown_first": round(self.shown_first / self.placed, 4) if self.placed else None,
            "pairs_with_display": self.placed,
        }


def _median(counts: Counter) -> float | None:
    """The median of the values counted (the mean of the two middle ones for an even n)."""
    total = sum(counts.values())
    if not total:
        return None
    middle, seen, low = (total - 1) // 2, 0, None
    for value in sorted(counts):
        seen += counts[value]
        if low is None and seen > middle:
            low = value
        if seen > total // 2:
            return (low + value) / 2 if total % 2 == 0 else float(low)
    return None  # not reached: the counts add up to total


def preview(project: Project, options: Options) -> dict:
    """The figures of the export ``options`` would make; ValueError for options the
    project cannot be exported with. Reads only: no file, no Export row."""
    check(project, options)
    tally = Tally()
    for pair in extract(project, options, positions=True):
        tally.add(pair)
    return tally.figures(prompts_with_judgments(project, options))
