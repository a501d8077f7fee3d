"""The allocator's uncertain policy: among the next items of the plain order it hands out
first the one whose sources' order the Bradley–Terry fit is least sure of, keeps the set
share of plain choices, and keeps the allocator's rules (the open assignment again, the
quota)."""

import random

import pytest
from django.core.cache import cache
from django.db.models import F
from django_scopes import scope, scopes_disabled

from annotation import allocator
from annotation.allocator import next_assignment
from annotation.models import Assignment
from tasks.models import Item, Project, Role
from tests.factories import member
from tests.qc.test_leaderboard import Arena

pytestmark = pytest.mark.django_db


def settled_and_open(organization, **settings) -> tuple[Arena, Item, Item]:
    """strong has beaten weak 40 times to 2; near and far have split 15 to 14. Two new
    items wait: strong vs weak first in the plain order, near vs far after it."""
    arena = Arena(organization)
    with scopes_disabled():
        Project.objects.filter(pk=arena.project.pk).update(**settings)
        arena.project.refresh_from_db()
    history = []
    for n in range(42):
        item, (strong, weak) = arena.item("strong", "weak")
        winner, loser = (strong, weak) if n < 40 else (weak, strong)
        arena.judge(item, 0, "preferred", winner, loser)
        history.append(item.pk)
    for n in range(29):
        item, (near, far) = arena.item("near", "far")
        winner, loser = (near, far) if n < 15 else (far, near)
        arena.judge(item, 0, "preferred", winner, loser)
        history.append(item.pk)
    settled, _ = arena.item("strong", "weak")
    uncertain, _ = arena.item("near", "far")
    with scopes_disabled():
        Item.objects.filter(pk__in=history).update(assignment_count=F("target_annotations"))
        Item.objects.filter(pk=settled.pk).update(random_order=1)
        Item.objects.filter(pk=uncertain.pk).update(random_order=2)
    return arena, settled, uncertain


def allocate(project, annotator):
    with scope(organization=project.organization):
        return next_assignment(project=project, annotator=annotator)


def test_uncertain_policy_hands_out_the_uncertain_pair_first(acme):
    arena, settled, uncertain = settled_and_open(
        acme.organization, allocation_policy="uncertain", active_random_percent=0
    )
    annotator = member(acme.organization, Role.ANNOTATOR)
    assert allocate(arena.project, annotator).assignment.item_id == uncertain.pk
    # the open assignment comes back on reload, not a new pick
    assert allocate(arena.project, annotator).assignment.item_id == uncertain.pk
    with scope(organization=acme.organization):
        fitted = allocator.project_fit(arena.project)
    near, far, strong, weak = (
        allocator.source_of(name, "imported", "") for name in ("near", "far", "strong", "weak")
    )
    assert fitted.uncertainty(near, far) > 0.3 > 0.01 > fitted.uncertainty(strong, weak)


def test_least_covered_policy_keeps_the_plain_order(acme):
    arena, settled, _ = settled_and_open(acme.organization)
    assert arena.project.allocation_policy == "least_covered"
    annotator = member(acme.organization, Role.ANNOTATOR)
    assert allocate(arena.project, annotator).assignment.item_id == settled.pk


def test_the_random_share_takes_the_plain_order(acme, monkeypatch):
    arena, settled, _ = settled_and_open(
        acme.organization, allocation_policy="uncertain", active_random_percent=100
    )
    annotator = member(acme.organization, Role.ANNOTATOR)
    assert allocate(arena.project, annotator).assignment.item_id == settled.pk


def test_the_random_share_is_the_set_percentage(acme, monkeypatch):
    monkeypatch.setattr(allocator, "_coin", random.Random(3))
    acme.project.active_random_percent = 30
    plain = sum(allocator.explore(acme.project) for _ in range(5000))
    assert 0.28 < plain / 5000 < 0.32
    acme.project.active_random_percent = 0
    assert not any(allocator.explore(acme.project) for _ in range(500))


def test_uncertain_picks_are_spread_over_annotators_and_respect_the_quota(acme):
    arena, settled, uncertain = settled_and_open(
        acme.organization, allocation_policy="uncertain", active_random_percent=0
    )
    with scopes_disabled():
        Project.objects.filter(pk=arena.project.pk).update(quota_per_annotator=1)
        arena.project.refresh_from_db()
    first, second = (member(acme.organization, Role.ANNOTATOR) for _ in range(2))
    taken = allocate(arena.project, first).assignment
    assert taken.item_id == uncertain.pk
    # the uncertain item is full (one annotation wanted): the next person gets the other
    assert allocate(arena.project, second).assignment.item_id == settled.pk
    with scopes_disabled():
        Assignment.objects.filter(pk=taken.pk).update(status="submitted")
    assert allocate(arena.project, first).reason == "quota"


def test_fit_is_cached_between_allocations(acme, django_assert_max_num_queries):
    arena, _, _ = settled_and_open(
        acme.organization, allocation_policy="uncertain", active_random_percent=0
    )
    cache.clear()
    with scope(organization=acme.organization):
        first = allocator.project_fit(arena.project)
        with django_assert_max_num_queries(0):
            again = allocator.project_fit(arena.project)
    assert again.index == first.index
