"""A project's pair-builder settings (``Project.pair_settings``), with their defaults.

- ``verify_below``: pairs whose confidence is below this go to experts (verification items);
- ``audit_sample_percent``: this share of the confident pairs goes to experts as well, to
  audit what is accepted without them;
- ``ab_confidence``: the probability an A/B test's winner really is better (beta-binomial
  posterior) from which it makes a pair; below it, no pair;
- ``grade_margin``: the smallest difference of two grades (on 0..1) that makes a pair;
- ``kto_desirable`` / ``kto_undesirable``: a rating (on 0..1) at or above the first is a
  desirable KTO row, at or below the second an undesirable one.
"""

from django.core.exceptions import ValidationError

DEFAULTS = {
    "verify_below": 0.8,
    "audit_sample_percent": 5.0,
    "ab_confidence": 0.95,
    "grade_margin": 0.25,
    "kto_desirable": 0.75,
    "kto_undesirable": 0.25,
}
# (lowest, highest) each may take.
BOUNDS = {
    "verify_below": (0.0, 1.0),
    "audit_sample_percent": (0.0, 100.0),
    "ab_confidence": (0.5, 1.0),
    "grade_margin": (0.0, 1.0),
    "kto_desirable": (0.0, 1.0),
    "kto_undesirable": (0.0, 1.0),
}


def validate_pair_settings(value) -> dict:
    """The settings with defaults filled in; ValidationError naming each bad one."""
    if value in (None, ""):
        value = {}
    if not isinstance(value, dict):
        raise ValidationError('Pair settings must be an object, e.g. {"verify_below": 0.8}.')
    errors = [f"unknown setting {name!r}" for name in value if name not in DEFAULTS]
    settings = dict(DEFAULTS)
    for name, (low, high) in BOUNDS.items():
        if name not in value:
            continue
        given = value[name]
        if (
            isinstance(given, bool)
            or not isinstance(given, int | float)
            or not low <= given <= high
        ):
            errors.append(f"{name!r} must be a number from {low:g} to {high:g}, not {given!r}")
            continue
        settings[name] = float(given)
    if settings["kto_undesirable"] >= settings["kto_desirable"]:
        errors.append("'kto_undesirable' must be below 'kto_desirable'")
    if errors:
        raise ValidationError(errors)
    return settings


def pair_settings(project) -> dict:
    """The project's settings, defaults filled in (stored ones were validated on save)."""
    return {**DEFAULTS, **(project.pair_settings or {})}
