"""Style and compliance rules as a generation recipe: for each prompt one response that
follows every rule and, per rule, one that breaks just that rule; the pair builder's
``style_rule`` then puts the rule-following response over each rule-breaking one.

``rules_recipe`` makes (or updates) an ordinary ``GenerationRecipe``, run like any other
(*Generate candidates* in the admin, ``POST …/generation-jobs`` with its name). Its
variants are

- ``rules:follows``: a system prompt listing every rule, asking to follow them all;
- ``rules:violates:<n>``: the same list, asking to follow them all but to break rule n
  deliberately, in a realistic way, without saying so.

Besides the readable name each variant carries ``style_rules`` = {"rules": [every rule],
"breaks": n or None}, which the generation job records on the candidate's ``parameters``:
the pair builder reads the rule texts from the candidate itself, so editing the recipe
later never relabels what was generated before, and only candidates made from the same
list of rules are paired.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from tasks import generation
from tasks.models import GenerationRecipe

MAX_RULES = 20
MAX_RULE_CHARS = 500
FOLLOWS = "rules:follows"
VIOLATES = "rules:violates:{n}"
# What a base may set; every variant of the recipe shares it.
BASE_KEYS = {"system_prompt", "temperature", "top_p", "max_tokens", "seed"}
DEFAULT_TEMPERATURE = 0.7


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def validate_rules(rules) -> list[str]:
    """The rules, stripped: 1 to 20 one-line texts of at most 500 characters, no two the
    same (ignoring case and spacing); ValidationError naming the bad one."""
    if isinstance(rules, str) or not isinstance(rules, list | tuple):
        raise ValidationError("Rules are a list of texts, one rule each.")
    if not rules:
        raise ValidationError("Give at least one rule.")
    if len(rules) > MAX_RULES:
        raise ValidationError(f"At most {MAX_RULES} rules; {len(rules)} were given.")
    clean: list[str] = []
    seen: dict[str, int] = {}
    for number, rule in enumerate(rules, start=1):
        if not isinstance(rule, str):
            raise ValidationError(f"Rule {number} is not text.")
        text = rule.strip()
        if not text:
            raise ValidationError(f"Rule {number} is empty.")
        if "\n" in text or "\r" in text:
            raise ValidationError(f"Rule {number} spans several lines: {_quote(text)}.")
        if len(text) > MAX_RULE_CHARS:
            raise ValidationError(
                f"Rule {number} has {len(text)} characters (at most {MAX_RULE_CHARS}): "
                f"{_quote(text)}."
            )
        same = " ".join(text.casefold().split())
        if same in seen:
            raise ValidationError(f"Rule {number} repeats rule {seen[same]}: {_quote(text)}.")
        seen[same] = number
        clean.append(text)
    return clean


def _listing(rules: list[str]) -> str:
    return "\n".join(f"{n}. {rule}" for n, rule in enumerate(rules, start=1))


def follows_prompt(rules: list[str], persona: str = "") -> str:
    lead = f"{persona.strip()}\n\n" if persona.strip() else ""
    return (
        f"{lead}Your answer must follow every one of these rules:\n{_listing(rules)}\n\n"
        "Answer the user's message helpfully and follow all of the rules. Do not mention "
        "the rules."
    )


def violates_prompt(rules: list[str], n: int, persona: str = "") -> str:
    lead = f"{persona.strip()}\n\n" if persona.strip() else ""
    return (
        f"{lead}These are the rules for answers:\n{_listing(rules)}\n\n"
        f"You are writing an example answer for a training dataset of answers that break "
        f"one rule. Answer the user's message helpfully and follow every rule except rule "
        f"{n} ({rules[n - 1]!r}): break that rule deliberately, in a realistic way, as a "
        f"careless assistant might. Do not mention the rules, and do not say that you are "
        f"breaking one."
    )


def rules_variants(rules: list[str], base: dict | None = None) -> list[dict]:
    """The recipe's variants, checked (``tasks.generation.validate_variants``)."""
    rules = validate_rules(rules)
    base = dict(base or {})
    unknown = set(base) - BASE_KEYS
    if unknown:
        raise ValidationError(f"Unknown base setting(s): {', '.join(sorted(unknown))}.")
    persona = base.pop("system_prompt", "")
    if not isinstance(persona, str):
        raise ValidationError("The base system_prompt must be text.")
    shared = {"temperature": DEFAULT_TEMPERATURE, **base}
    variants = [
        {
            **shared,
            "name": FOLLOWS,
            "system_prompt": follows_prompt(rules, persona),
            "style_rules": {"rules": rules, "breaks": None},
        }
    ]
    for n in range(1, len(rules) + 1):
        variants.append(
            {
                **shared,
                "name": VIOLATES.format(n=n),
                "system_prompt": violates_prompt(rules, n, persona),
                "style_rules": {"rules": rules, "breaks": n},
            }
        )
    return generation.validate_variants(variants)


@transaction.atomic
def rules_recipe(
    *, organization, name: str, rules: list[str], base: dict | None = None
) -> GenerationRecipe:
    """Create, or update in place, the organization's recipe ``name`` made from ``rules``
    (see the module's docstring); ``base`` sets the sampling parameters every variant shares
    (temperature, top_p, max_tokens, seed) and a system prompt put before the rules.
    ValidationError naming the bad rule or setting."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError("A recipe name of 1 to 100 characters is required.")
    if name == generation.DEFAULT_RECIPE_NAME:
        raise ValidationError("This is the built-in recipe's name; choose another.")
    variants = rules_variants(rules, base)
    recipe, _ = GenerationRecipe.objects.update_or_create(
        organization=organization, name=name, defaults={"variants": variants}
    )
    return recipe
