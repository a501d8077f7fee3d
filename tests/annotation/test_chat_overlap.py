"""A chat turn is an item like any other: with overlap (``annotations_per_item`` > 1) a second
expert gets it on the ordinary annotate page, in the mode the turn's item is judged in (a
pair with its labels and strength, or a ranking), not in the project's mode "chat"; both
judgments are stored and the review and the exports see them."""

import re

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, Judgment
from exports.pairs import judgments_for_pairs
from tasks.models import Item, Role
from tests.chat import test_chat
from tests.chat.test_chat import judge, make_chat, say, start
from tests.factories import member

pytestmark = pytest.mark.django_db
fake = test_chat.fake  # the streaming server fixture of the chat tests


def overlapped_chat(tenant, url, *, replies=2):
    project, endpoint = make_chat(tenant, url, replies=replies)
    project.annotations_per_item = 2
    project.save(update_fields=["annotations_per_item"])
    return project, endpoint


def test_a_second_expert_judges_a_chat_turn_as_a_pair_with_strength(acme, fake, as_user):
    project, endpoint = overlapped_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Which tea is best?")
    judge(acme, conversation, preference="A is much better")
    with scopes_disabled():
        item = Item.objects.get(project=project)
    assert item.mode == "pairwise" and item.target_annotations == 2

    second = member(acme.organization, Role.ANNOTATOR)
    client = as_user(second)
    page = client.get(reverse("annotation:annotate", args=[project.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-mode="pairwise"' in html and 'data-mode="chat"' not in html
    assert "Response A" in html and "Response B" in html
    assert 'value="B is slightly better"' in html  # the pairwise labels, with strength
    assignment_id = re.search(r'data-assignment="(\d+)"', html).group(1)
    with scopes_disabled():
        assert Assignment.objects.get(pk=assignment_id).item_id == item.pk

    done = client.post(
        reverse("annotation:submit", args=[project.pk, assignment_id]),
        {"preference": "B is slightly better"},
        HTTP_X_CHOSEN_FRAGMENT="1",
    )
    assert done.status_code == 200, done.json()["html"][:500]
    with scopes_disabled():
        judgments = {j.annotator_id: j for j in Judgment.objects.filter(item=item)}
        assert set(judgments) == {acme.annotator.pk, second.pk}
        theirs = judgments[second.pk]
        order = Assignment.objects.get(pk=assignment_id).display_order
        assert theirs.chosen_id == order[1] and theirs.strength == 1
        assert judgments_for_pairs(project).filter(item=item).count() == 2

    review = as_user(acme.lead).get(reverse("annotation:review_item", args=[project.pk, item.pk]))
    assert review.status_code == 200
    assert review.content.decode().count("B is slightly better") >= 1
    assert review.content.decode().count("A is much better") >= 1


def test_a_turn_of_three_replies_is_ranked_on_the_annotate_page(acme, fake, as_user):
    project, endpoint = overlapped_chat(acme, fake.url, replies=3)
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Name a river.")
    judge(acme, conversation, preference=[1, 2, 3])
    second = member(acme.organization, Role.ANNOTATOR)
    client = as_user(second)
    html = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()
    assert 'data-mode="ranking"' in html and 'id="ranking-input"' in html
    assignment_id = re.search(r'data-assignment="(\d+)"', html).group(1)
    done = client.post(
        reverse("annotation:submit", args=[project.pk, assignment_id]),
        {"preference_ranking": "3,1,2"},
        HTTP_X_CHOSEN_FRAGMENT="1",
    )
    assert done.status_code == 200, done.json()["html"][:500]
    with scope(organization=acme.organization):
        ranked = Judgment.objects.get(annotator=second)
        order = ranked.assignment.display_order
        assert ranked.ranking == [order[2], order[0], order[1]]
        assert Judgment.objects.filter(item=ranked.item).count() == 2
