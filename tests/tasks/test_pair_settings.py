"""A project's pair-builder settings: defaults, and a clear error for each bad value."""

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scope

from tasks.feedback.settings import DEFAULTS, pair_settings, validate_pair_settings
from tasks.models import Project

pytestmark = pytest.mark.django_db


def test_empty_settings_are_the_defaults_and_given_ones_win():
    assert validate_pair_settings({}) == DEFAULTS
    assert validate_pair_settings(None) == DEFAULTS
    assert validate_pair_settings({"verify_below": 0.6})["verify_below"] == 0.6


def test_every_bad_value_is_named():
    with pytest.raises(ValidationError) as raised:
        validate_pair_settings(
            {"verify_below": 2, "ab_confidence": "high", "grade_margin": True, "speed": 1}
        )
    messages = raised.value.messages
    assert "unknown setting 'speed'" in messages
    assert "'verify_below' must be a number from 0 to 1, not 2" in messages
    assert "'ab_confidence' must be a number from 0.5 to 1, not 'high'" in messages
    assert "'grade_margin' must be a number from 0 to 1, not True" in messages
    with pytest.raises(ValidationError, match="must be below"):
        validate_pair_settings({"kto_undesirable": 0.8, "kto_desirable": 0.7})
    with pytest.raises(ValidationError, match="must be an object"):
        validate_pair_settings([0.8])


def test_a_project_refuses_bad_settings_and_keeps_what_the_lead_wrote(acme):
    with scope(organization=acme.organization):
        project = Project.objects.get(pk=acme.project.pk)
        project.pair_settings = {"verify_below": -1}
        with pytest.raises(ValidationError) as raised:
            project.full_clean()
        assert "pair_settings" in raised.value.message_dict
        project.pair_settings = {"verify_below": 0.7}
        project.full_clean()
        project.save()
        project.refresh_from_db()
    assert project.pair_settings == {"verify_below": 0.7}
    assert pair_settings(project) == {**DEFAULTS, "verify_below": 0.7}
