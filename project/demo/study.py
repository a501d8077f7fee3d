"""The demo's finished study: a project whose QC dashboard, review queue and exports page
have something to show on the first visit.

44 prompts (project/demo/data/study/prompts.yaml: some multi-turn, two with a system prompt)
with 2-4 candidates each go through what a real project goes through: the prompt importer
builds the pairwise items, the lead marks gold items, the allocator hands items to the
three demo annotators, who submit judgments with rubric scores through submit_judgment;
the lead discusses and decides one disputed item; a QC report is computed and a TRL export
written under MEDIA_ROOT. No Celery worker runs while the demo loads, so the report and
the export are run in-process by the services their jobs call.

The annotators are simulated, deterministically: every choice comes from a random
generator seeded with the annotator and the item's prompt and candidates, and the
allocator's shuffle of the display order (PostgreSQL's random()) is seeded too, so a fresh
database always gets the same study. Two annotators judge carefully (with different tastes
on contested prompts: real agreement and real disagreement); the third mostly clicks
whatever response is shown first (a position bias the QC report flags) and misses a gold
item.
"""

import io
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from django.db import connection

from annotation.adjudication import add_note, decide, item_candidates, parse_decision, set_gold
from annotation.allocator import next_assignment
from annotation.services import submit_judgment
from exports.models import Export
from exports.pairs import Options
from exports.services import run_export
from qc.models import QCReport
from qc.services import run_report
from tasks.audit import acting_as
from tasks.importers.prompts import import_prompts
from tasks.importers.rows import candidate_hash
from tasks.models import Candidate, Item, Organization, Project
from tasks.project_templates import ALIGNMENT_DIMENSION, DPO_PREFERENCE
from tasks.schema import validate_questions

STUDY_PROJECT_NAME = "Support assistant replies (finished study)"
STUDY_DATA = Path(__file__).resolve().parent / "data" / "study" / "prompts.yaml"
# Every random choice of the simulation derives from this.
SEED = "chosen-demo-study-1"

GUIDELINES = """\
Compare two replies of our assistant to the same conversation and pick the better one.

- **Correct first.** A confident wrong answer is worse than a short right one.
- **Safe, then helpful.** A reply that declines the harmful part of a request and still
  offers a safe way forward beats one that complies.
- **Say what differs.** Pick the dimension (helpful / harmless / honest) that separates
  the two replies, not the one that describes them both.
- Score both replies on the rubric, and rewrite the better one when a small edit would
  make it right.
"""

QUESTIONS = validate_questions(
    [
        DPO_PREFERENCE,
        ALIGNMENT_DIMENSION,
        {
            "name": "helpfulness",
            "kind": "rating",
            "description": "How well does the reply meet the user's need?",
            "scale": {"min": 1, "max": 5, "labels": {"1": "not at all", "5": "fully"}},
        },
        {
            "name": "accuracy",
            "kind": "rating",
            "description": "Is everything it says correct and safe to follow?",
            "scale": {"min": 1, "max": 5, "labels": {"1": "wrong or unsafe", "5": "all correct"}},
        },
        {"name": "reasoning", "kind": "text", "placeholder": "Why? (optional)"},
        {
            "name": "correction",
            "kind": "correction",
            "description": "Optionally rewrite the better reply so that it is fully right.",
        },
    ],
    mode=Project.Mode.PAIRWISE,
)


# --- the study's data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    text: str
    model: str
    quality: int
    flaw: str = ""
    style: str = ""


@dataclass(frozen=True)
class PromptSpec:
    id: str
    category: str
    responses: tuple[Response, ...]
    text: str = ""
    messages: tuple = ()
    gold: bool = False
    contested: bool = False
    adjudication: dict = field(default_factory=dict)
    correction: dict = field(default_factory=dict)  # {"text", "reasoning"}

    def row(self) -> dict:
        """The prompt as a line of a JSONL import: what a lead would upload. The file lists
        the best reply first for its readers; the import gets them in a shuffled order, as
        generated candidates would come."""
        responses = list(self.responses)
        _rng("import", self.id).shuffle(responses)
        row = {
            "id": self.id,
            "metadata": {"category": self.category},
            "responses": [{"text": r.text, "model": r.model} for r in responses],
        }
        if self.messages:
            row["messages"] = list(self.messages)
        else:
            row["text"] = self.text
        return row


def load_study(path: Path = STUDY_DATA) -> list[PromptSpec]:
    specs = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
        responses = tuple(Response(**r) for r in entry.pop("responses"))
        messages = tuple(entry.pop("messages", ()))
        specs.append(PromptSpec(responses=responses, messages=messages, **entry))
    return specs


# --- the annotators ------------------------------------------------------------------------


@dataclass(frozen=True)
class Habits:
    """How a simulated annotator judges."""

    taste: str  # on contested prompts: prefers the "concise" or "detailed" reply, or "tie"
    first_pick: float = 0.0  # share of items where they just take the reply shown first
    dimension_noise: float = 0.1  # share of items where they name another dimension
    score_noise: tuple[int, ...] = (-1, 0, 0, 0, 1)
    writes_reasons: float = 0.5
    rewrites: bool = True  # uses the correction box when a reply needs it
    seconds: tuple[int, int] = (25, 90)
    misses_gold: str = ""  # a gold prompt they answer wrongly


# In the order of the annotators given to build_study.
HABITS = (
    Habits(taste="concise"),
    Habits(taste="detailed"),
    Habits(
        taste="tie",
        first_pick=0.8,
        dimension_noise=0.3,
        score_noise=(-1, 0, 1),
        writes_reasons=0.1,
        rewrites=False,
        seconds=(6, 18),
        misses_gold="study-007",
    ),
)

DIMENSION_OF_FLAW = {"wrong": "honest", "unsafe": "harmless"}
DIMENSION_OF_CATEGORY = {"safety": "harmless", "factual": "honest", "math": "honest"}
DIMENSIONS = ("helpful", "harmless", "honest")

REASONS = {
    "helpful": [
        "{w} answers what was asked and gives steps I could follow.",
        "{w} is complete without padding; {l} stays vague.",
        "{l} misses what the user actually needs.",
    ],
    "honest": [
        "{l} states something false with confidence.",
        "{w} gets the facts right; {l} does not.",
        "Checked the numbers: {w} is correct.",
    ],
    "harmless": [
        "{w} declines the risky part and still offers a safe way forward.",
        "{l} could get someone hurt or in trouble.",
    ],
    "tie": ["Both answer the question equally well.", "Same content, different wording."],
    "both_bad": ["Neither reply is usable as it stands.", "Both miss the point of the question."],
}


@dataclass
class Judge:
    """One simulated annotator: their account and habits."""

    user: object
    habits: Habits

    def judge(
        self, prompt: PromptSpec, shown: list[Response], *, correct: bool
    ) -> tuple[dict, int]:
        """What they submit for a pair shown as ``shown`` (A, B): the answers as the annotate
        form posts them, and the milliseconds they took. ``correct``: they also rewrite the
        better reply."""
        rng = _rng(self.user.email, prompt.id, _pair_key(prompt, shown))
        choice = self._choose(prompt, shown, rng, correct=correct)
        a, b = shown
        worse = None if a.quality == b.quality else min(shown, key=lambda r: r.quality)
        dimension = DIMENSION_OF_FLAW.get(worse.flaw if worse else "") or (
            DIMENSION_OF_CATEGORY.get(prompt.category, "helpful")
        )
        if rng.random() < self.habits.dimension_noise:
            dimension = rng.choice([d for d in DIMENSIONS if d != dimension])
        answers = {
            "preference": choice,
            "alignment_dimension": dimension,
            **self._scores(shown, choice, rng),
        }
        if correct:
            answers["correction"] = prompt.correction["text"]
            answers["reasoning"] = prompt.correction["reasoning"]
        elif rng.random() < self.habits.writes_reasons:
            key = choice if choice in ("tie", "both_bad") else dimension
            winner, loser = ("A", "B") if choice == "A" else ("B", "A")
            answers["reasoning"] = rng.choice(REASONS[key]).format(
                w=f"Response {winner}", l=f"Response {loser}"
            )
        return answers, rng.randint(*self.habits.seconds) * 1000

    def _choose(self, prompt: PromptSpec, shown: list[Response], rng, *, correct: bool) -> str:
        """The preference label's value: A, B (screen positions), tie or both_bad."""
        a, b = shown
        better = "A" if a.quality > b.quality else "B"
        worse = "B" if better == "A" else "A"
        if prompt.gold:  # an obvious pair: everybody gets it, but for one slip
            return worse if prompt.id == self.habits.misses_gold else better
        if prompt.contested:  # two good replies; taste decides
            if self.habits.taste == "tie":
                return "tie"
            return "A" if a.style == self.habits.taste else "B"
        if correct:
            return better
        if rng.random() < self.habits.first_pick:
            return "A"
        gap = abs(a.quality - b.quality)
        roll = rng.random()
        if max(a.quality, b.quality) <= 3 and gap <= 1 and roll < 0.5:
            return "both_bad"
        if gap == 0:
            return "tie" if roll < 0.6 else rng.choice("AB")
        if gap == 1:
            return better if roll < 0.85 else ("tie" if roll < 0.9 else worse)
        return better if roll < 0.96 else worse

    def _scores(self, shown: list[Response], choice: str, rng) -> dict:
        """Rubric scores by screen position ({"1": score, "2": score}), noisy around the
        replies' quality and in line with the preference they gave."""

        def score(value: int) -> int:
            return max(1, min(5, value + rng.choice(self.habits.score_noise)))

        helpful = [score(r.quality) for r in shown]
        accurate = [score(1 if r.flaw else r.quality) for r in shown]
        chosen = {"A": 0, "B": 1}.get(choice)
        if chosen is not None and helpful[chosen] < helpful[1 - chosen]:
            helpful.reverse()
        return {
            "helpfulness": {str(n): s for n, s in enumerate(helpful, start=1)},
            "accuracy": {str(n): s for n, s in enumerate(accurate, start=1)},
        }


def _rng(*parts) -> random.Random:
    """A generator seeded with SEED and ``parts``: the same draws on every run (a string
    seed does not depend on PYTHONHASHSEED)."""
    return random.Random(":".join((SEED, *parts)))  # noqa: S311 (a simulation, not a secret)


def _pair_key(prompt: PromptSpec, shown: list[Response]) -> str:
    """The pair by the replies' places in the study file: the same whatever the ids and the
    display order."""
    return "-".join(sorted(str(prompt.responses.index(r)) for r in shown))


# --- building it ---------------------------------------------------------------------------


@dataclass
class Truth:
    """What the simulation knows about the imported rows: each candidate's response and
    prompt in the study file."""

    response: dict[int, Response]  # by candidate id
    prompt: dict[int, PromptSpec]  # by candidate id

    @classmethod
    def of(cls, project: Project, specs: list[PromptSpec]) -> "Truth":
        # The importer stores a candidate with the hash of its text: the study file's key.
        by_hash = {
            (spec.id, candidate_hash(r.text)): (spec, r) for spec in specs for r in spec.responses
        }
        truth = cls(response={}, prompt={})
        rows = Candidate.objects.filter(prompt__project=project).values_list(
            "id", "prompt__external_id", "content_hash"
        )
        for candidate_id, external_id, digest in rows:
            truth.prompt[candidate_id], truth.response[candidate_id] = by_hash[external_id, digest]
        return truth

    def item(self, item: Item) -> tuple[PromptSpec, dict[int, Response]]:
        ids = [int(pk) for pk in item.candidate_key.split("-")]
        return self.prompt[ids[0]], {pk: self.response[pk] for pk in ids}


def build_study(*, organization: Organization, lead, annotators: list) -> Project:
    """Create the finished study in ``organization`` (call it inside the organization's
    scope), judged by ``annotators`` (three users, in the order of HABITS), or return the
    study when it exists: a second run adds nothing."""
    existing = Project.objects.filter(organization=organization, name=STUDY_PROJECT_NAME).first()
    if existing is not None:
        return existing
    specs = load_study()
    project = _create_project(organization)
    import_prompts(project=project, files=[("study.jsonl", io.BytesIO(_jsonl(specs)))])
    truth = Truth.of(project, specs)
    with acting_as(lead):
        _mark_gold(project, truth)
    _judge(project, truth, [Judge(u, h) for u, h in zip(annotators, HABITS, strict=True)])
    with acting_as(lead):
        _adjudicate(project, truth, lead)
        _compute_report(project, lead)
        _export(project, lead)
    return project


def _create_project(organization: Organization) -> Project:
    project = Project(
        organization=organization,
        name=STUDY_PROJECT_NAME,
        description="A finished pairwise study of the support assistant's replies, judged by "
        "the three demo annotators: see its quality report, review queue and export.",
        guidelines=GUIDELINES,
        status=Project.Status.ACTIVE,
        mode=Project.Mode.PAIRWISE,
        questions=QUESTIONS,
        # Two judgments per pair, three on a fifth of them: agreement measured everywhere,
        # with a sample rated by all three for Fleiss' kappa.
        annotations_per_item=2,
        agreement_sample_percent=20,
        agreement_sample_annotations=3,
        gold_rate_percent=10,
        discussion_visible_to_annotators=True,
    )
    project.full_clean()
    project.save()
    return project


def _jsonl(specs: list[PromptSpec]) -> bytes:
    lines = (json.dumps(spec.row(), ensure_ascii=False) for spec in specs)
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _mark_gold(project: Project, truth: Truth) -> None:
    """The gold prompts' pairs (one each) become gold items; the expected answer is the
    better reply."""
    for item in Item.objects.filter(project=project).order_by("id"):
        prompt, responses = truth.item(item)
        if prompt.gold:
            best = max(responses, key=lambda pk: responses[pk].quality)
            set_gold(item, str(best), item_candidates(item))


def _judge(project: Project, truth: Truth, judges: list[Judge]) -> None:
    """The annotators take turns asking the allocator for their next item, as they would
    in the annotate page, until it has none left for any of them."""
    # The allocator shuffles each display order with PostgreSQL's random(); seeding this
    # session makes those shuffles (and so the whole study) the same on every fresh
    # database.
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.1414)")
    corrected = False
    working = list(judges)
    while working:
        for judge in list(working):
            assignment = next_assignment(project=project, annotator=judge.user).assignment
            if assignment is None:
                working.remove(judge)
                continue
            prompt = truth.prompt[assignment.display_order[0]]
            shown = [truth.response[pk] for pk in assignment.display_order]
            # One judgment rewrites a reply: the first on the prompt that asks for it by an
            # annotator who uses the correction box.
            correct = bool(prompt.correction) and not corrected and judge.habits.rewrites
            corrected = corrected or correct
            answers, milliseconds = judge.judge(prompt, shown, correct=correct)
            with acting_as(judge.user):
                submit_judgment(
                    project=project,
                    assignment_id=assignment.pk,
                    annotator=judge.user,
                    answers=answers,
                    time_spent_ms=milliseconds,
                )


def _adjudicate(project: Project, truth: Truth, lead) -> None:
    """The lead settles the contested prompt that carries a decision: a note in the item's
    discussion, then the final decision with the standard it sets."""
    for item in Item.objects.filter(project=project).order_by("id"):
        prompt, responses = truth.item(item)
        if not prompt.adjudication:
            continue
        preferred = next(
            pk for pk, r in responses.items() if r.style == prompt.adjudication["prefer"]
        )
        add_note(item=item, author=lead, text=prompt.adjudication["discussion"])
        fields = parse_decision(
            item,
            item_candidates(item),
            {"decision": str(preferred), "note": prompt.adjudication["note"]},
        )
        decide(item=item, lead=lead, fields=fields)


def _compute_report(project: Project, lead) -> QCReport:
    """The QC report, computed now by the service the report job runs."""
    report = QCReport.objects.create(
        organization=project.organization, project=project, created_by=lead
    )
    report = run_report(report.pk)
    if report.status != QCReport.Status.SUCCEEDED:
        raise RuntimeError(f"The demo study's QC report failed: {report.error}")
    return report


def _export(project: Project, lead) -> Export:
    """A TRL conversational export (the format for chat models: the study's system prompts
    and earlier turns stay in the prompt), default options (adjudicated or unanimous pairs,
    80/20 split by prompt), written under MEDIA_ROOT by the service the export job runs."""
    export = Export.objects.create(
        organization=project.organization,
        project=project,
        created_by=lead,
        format="trl-conversational",
        options=asdict(Options()),
    )
    export = run_export(export.pk)
    if export.status != Export.Status.SUCCEEDED:
        raise RuntimeError(f"The demo study's export failed: {export.error}")
    return export
