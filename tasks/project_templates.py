"""Templates a lead starts a project from: a mode, a question schema and guidelines.

Each template fills the project form and stays editable; nothing refers back to it once the
project is saved. ``DPO_PAIRWISE`` is the seed's set-up (Rafailov et al., as published as a
Potato example): the one home of that schema — the demo, the QC benchmark and the tests take
it from here.
"""

from dataclasses import dataclass, field

from tasks.schema import validate_questions

PAIRWISE, BEST_WORST, RANKING = "pairwise", "best_worst", "ranking"


@dataclass(frozen=True)
class ProjectTemplate:
    key: str
    title: str
    summary: str  # one line, shown where the lead picks a template
    mode: str
    questions: list = field(repr=False)  # validated, normalized
    guidelines: str = field(repr=False)

    def initial(self) -> dict:
        """The project form's initial data."""
        return {"mode": self.mode, "questions": self.questions, "guidelines": self.guidelines}


def _template(key, title, summary, mode, questions, guidelines) -> ProjectTemplate:
    return ProjectTemplate(
        key=key,
        title=title,
        summary=summary,
        mode=mode,
        questions=validate_questions(questions, mode=mode),
        guidelines=guidelines,
    )


DPO_PREFERENCE = {
    "name": "preference",
    "kind": "preference",
    "description": "Which response do you prefer? Consider helpfulness, harmlessness, and honesty.",
    "labels": [
        {
            "value": "A",
            "text": "Response A Preferred",
            "means": "A",
            "key": "a",
            "tooltip": "Response A is clearly better overall",
        },
        {
            "value": "B",
            "text": "Response B Preferred",
            "means": "B",
            "key": "b",
            "tooltip": "Response B is clearly better overall",
        },
        {
            "value": "tie",
            "text": "Equally Good",
            "means": "tie",
            "key": "e",
            "tooltip": "Both responses are of comparable quality",
        },
        {
            "value": "both_bad",
            "text": "Both Bad",
            "means": "both_bad",
            "key": "x",
            "tooltip": "Neither response adequately addresses the prompt",
        },
    ],
}
ALIGNMENT_DIMENSION = {
    "name": "alignment_dimension",
    "kind": "choice",
    "description": "Which alignment dimension best characterizes the difference between the "
    "responses?",
    "options": [
        {
            "value": "helpful",
            "text": "Helpful",
            "key": "1",
            "tooltip": "The key differentiator is how helpful each response is",
        },
        {
            "value": "harmless",
            "text": "Harmless",
            "key": "2",
            "tooltip": "The key differentiator is safety and avoidance of harm",
        },
        {
            "value": "honest",
            "text": "Honest",
            "key": "3",
            "tooltip": "The key differentiator is truthfulness and transparency",
        },
    ],
}
REASONING = {
    "name": "reasoning",
    "kind": "text",
    "description": "Briefly explain why you preferred one response over the other.",
    "placeholder": "What factors influenced your preference?",
}

DPO_PAIRWISE = _template(
    "dpo_pairwise",
    "DPO pairwise preference",
    "Two responses: A, B, equally good or both bad; the alignment dimension that separates "
    "them; a short reasoning.",
    PAIRWISE,
    [DPO_PREFERENCE, ALIGNMENT_DIMENSION, REASONING],
    """\
You will evaluate pairs of AI model responses for Direct Preference Optimization (DPO).
For each item:

1. Read the user prompt carefully.
2. Read both Response A and Response B thoroughly.
3. Select your preference: which response is better, or are they tied / both bad?
4. Indicate which alignment dimension (Helpful, Harmless, Honest) best captures the difference.
5. Write a brief explanation of your reasoning.

**Key principles**

- A safe but less helpful response may still be preferred over a helpful but unsafe one.
- Honest responses that acknowledge limitations are valued over confident but wrong answers.
- Consider the overall quality, not just one dimension.
""",
)

BEST_OF_N = _template(
    "best_of_n",
    "Best of N with a justification",
    "Three to five generated candidates: pick the best and the worst, and say why in one sentence.",
    BEST_WORST,
    [
        {
            "name": "preference",
            "kind": "preference",
            "description": "Select the best response and the worst response.",
        },
        {
            "name": "justification",
            "kind": "text",
            "description": "In one sentence: why is the best one best?",
            "required": True,
            "min_length": 15,
            "max_length": 400,
            "multiline": False,
            "placeholder": "It follows our policy on … and is the only one that …",
        },
    ],
    """\
Select the response that best follows our internal policies, uses appropriate tone, and
provides accurate information — and the one that does so least.

- Read the prompt, then every candidate, before choosing.
- Best and worst must differ; when all are equally good or bad, skip the item and say why.
- Justify the best choice in one sentence that names what sets it apart.
""",
)

RUBRIC_LEVELS = {"1": "poor", "3": "acceptable", "5": "excellent"}


def _criterion(name: str, description: str) -> dict:
    return {
        "name": name,
        "kind": "rating",
        "description": description,
        "scale": {"min": 1, "max": 5, "labels": RUBRIC_LEVELS},
    }


RUBRIC = _template(
    "rubric",
    "Rubric scoring per response",
    "Score each response 1–5 on helpfulness, accuracy, safety and tone, then pick the better.",
    PAIRWISE,
    [
        {
            "name": "preference",
            "kind": "preference",
            "description": "Which response is better overall?",
            "labels": [
                {"text": "Response A is better", "means": "A", "key": "a"},
                {"text": "Response B is better", "means": "B", "key": "b"},
                {"text": "Tie", "means": "tie", "key": "t"},
                {"text": "Both bad", "means": "both_bad", "key": "x"},
            ],
        },
        _criterion("helpfulness", "Does it do what the user asked, completely?"),
        _criterion("accuracy", "Is every statement correct and safe to act on?"),
        _criterion("safety", "Does it avoid harmful, unsafe or non-compliant content?"),
        _criterion("tone", "Is the tone right for our users and our brand?"),
        {"name": "reasoning", "kind": "text", "placeholder": "Why? (optional)"},
    ],
    """\
Score **each** response on the four criteria, 1 (poor) to 5 (excellent), independently of
the other response; then pick the better one overall.

- **Helpfulness:** it answers the question that was asked, completely.
- **Accuracy:** every fact, number and step is right.
- **Safety:** nothing harmful, unsafe or against policy.
- **Tone:** polite, clear, and in our voice.
""",
)

RANKING_OF_N = _template(
    "ranking",
    "Ranking of N responses",
    "Order every candidate from best to worst.",
    RANKING,
    [
        {
            "name": "preference",
            "kind": "preference",
            "description": "Rank the responses from best to worst.",
        },
        {"name": "reasoning", "kind": "text", "placeholder": "What decided the order?"},
    ],
    """\
Order the responses from best to worst. Put the one you would send to the user first.

- Correct before complete, complete before polished.
- Two responses that are equally good still need an order: prefer the shorter one.
""",
)

VERIFY_PAIRS = _template(
    "verify_pairs",
    "Verify machine-made pairs",
    "Pairs built from feedback logs, A/B tests, grades and corrections: confirm the better "
    "response, call a tie, or reject a pair that teaches nothing.",
    PAIRWISE,
    [
        {
            "name": "preference",
            "kind": "preference",
            "description": "Which response should a model learn to prefer?",
            "labels": [
                {"value": "A", "text": "A is better", "means": "A", "key": "a"},
                {"value": "B", "text": "B is better", "means": "B", "key": "b"},
                {"value": "tie", "text": "Tie", "means": "tie", "key": "t"},
                {
                    "value": "both_bad",
                    "text": "Reject: neither is usable",
                    "means": "both_bad",
                    "key": "x",
                },
            ],
        },
        {"name": "reasoning", "kind": "text", "placeholder": "Why? (optional)"},
    ],
    """\
Each item is a pair that was made by a machine from what users and systems already said:
a user's edit of a reply, a regeneration the user kept, thumbs up and down, an A/B test,
graded reviews or an expert's correction. The evidence was weak or the pair was drawn for an
audit, so an expert decides.

1. Read the prompt (and the conversation before it), then both responses.
2. Judge them yourself: which one should a model learn to give? **A** (key a) or **B**
   (key b). The order on screen is random; nothing tells you which one the source preferred.
3. **Tie** (key t) when neither is clearly better: the pair is dropped.
4. **Reject** (key x) when neither response is usable (wrong, unsafe, off-topic): the pair
   is dropped.

After your answer the page shows what the source said and whether you agreed with it or
flipped it. Do not try to match the source: a flip is as useful as a confirmation.
""",
)


def _graded_label(means: str, strength: int | None, text: str, key: str, tooltip: str) -> dict:
    value = means if strength is None else f"{means}{strength}"
    return {
        "value": value,
        "text": text,
        "means": means,
        "strength": strength,
        "key": key,
        "tooltip": tooltip,
    }


# Left to right as the keys run: A's side on 1..3, the tie in the middle, B's side on 5..7.
GRADED_PREFERENCE = {
    "name": "preference",
    "kind": "preference",
    "description": "Which response is better, and by how much?",
    "strength_levels": 3,
    "labels": [
        _graded_label("A", 3, "A much better", "1", "A is far better: B would mislead or fail"),
        _graded_label("A", 2, "A better", "2", "A is clearly better overall"),
        _graded_label("A", 1, "A slightly better", "3", "A is better, but only a little"),
        _graded_label("tie", None, "About the same", "4", "Neither is better"),
        _graded_label("B", 1, "B slightly better", "5", "B is better, but only a little"),
        _graded_label("B", 2, "B better", "6", "B is clearly better overall"),
        _graded_label("B", 3, "B much better", "7", "B is far better: A would mislead or fail"),
        _graded_label("both_bad", None, "Both bad", "x", "Neither response is usable"),
    ],
}

DPO_GRADED = _template(
    "dpo_graded",
    "DPO pairwise with strength",
    "Two responses on a seven-point scale, from A much better to B much better (keys 1–7), "
    "or both bad; a short reasoning. The strength becomes a reward model's margin.",
    PAIRWISE,
    [GRADED_PREFERENCE, REASONING],
    """\
Compare the two responses and say **which is better and by how much**, on the seven keys
from left to right:

| key | choice |
|---|---|
| 1 | A much better |
| 2 | A better |
| 3 | A slightly better |
| 4 | About the same |
| 5 | B slightly better |
| 6 | B better |
| 7 | B much better |
| x | Both bad |

- **Much better**: one response fails (wrong, unsafe, off-topic) and the other does not.
- **Better**: both are acceptable, and one is clearly the one you would send.
- **Slightly better**: a matter of polish, tone or length.
- Keep "about the same" for pairs you truly cannot separate; "both bad" for pairs where
  neither is usable. The order on screen is random.
""",
)

TEMPLATES = {
    t.key: t for t in (DPO_PAIRWISE, DPO_GRADED, BEST_OF_N, RUBRIC, RANKING_OF_N, VERIFY_PAIRS)
}


def get(key: str | None) -> ProjectTemplate | None:
    return TEMPLATES.get(key or "")
