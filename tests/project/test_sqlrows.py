"""Rows read with SQL written out (tasks.sqlrows) on the annotate and chat hot paths: the
instances are the ORM's, and another organization's rows are not found."""

import pytest
from django.db import connection, transaction
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django_scopes import scope, scopes_disabled
from django_scopes.exceptions import ScopeError

from annotation.models import Assignment
from chat import services
from chat.models import Conversation, Message
from chat.views import own_conversation
from tasks import sqlrows
from tasks.models import Item, LLMEndpoint, Membership, Project, Prompt, Role
from tasks.tenancy import memberships_of
from tests.chat.test_chat import branched, current, make_chat, say, start
from tests.conftest import client_for
from tests.factories import OrganizationFactory, member
from tests.fake_llm import FakeStreamingLLM


@pytest.fixture
def fake():
    server = FakeStreamingLLM(tokens=8, interval=0.005)
    yield server
    server.close()


class Asking:
    """What own_conversation reads of a request."""

    def __init__(self, user):
        self.user = user


def same(made, model, pk):
    """``made`` holds every column as the ORM reads row ``pk``."""
    with scopes_disabled():
        loaded = model.objects.get(pk=pk)
    for field in model._meta.concrete_fields:
        assert getattr(made, field.attname) == getattr(loaded, field.attname), field.name
    assert made._state.adding is False and made._state.db == "default"


def test_a_conversation_its_current_message_and_waiting_assignment_are_the_orms(acme, fake):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello?")
    with scope(organization=acme.organization):
        with CaptureQueriesContext(connection) as reads:
            mine = own_conversation(Asking(acme.annotator), project, conversation.pk)
            waiting = services.waiting_assignment(mine)
            # everything the judging form reads came with the two rows
            item_mode, prompt_text = waiting.item.mode, waiting.item.prompt.text
            names = (mine.project.name, mine.endpoint.model, mine.current.text, waiting.project)
        assert len(reads) == 2
    same(mine, Conversation, conversation.pk)
    same(mine.current, Message, mine.current_id)
    same(mine.endpoint, LLMEndpoint, endpoint.pk)
    same(waiting, Assignment, waiting.pk)
    same(waiting.item, Item, waiting.item_id)
    same(waiting.item.prompt, Prompt, waiting.item.prompt_id)
    assert isinstance(waiting.display_order, list) and len(waiting.display_order) == 2
    assert isinstance(waiting.item.prompt.messages, list)  # JSON, converted as the ORM does
    assert item_mode == "pairwise" and prompt_text == "Hello?"
    assert names[0] == project.name and names[3] == project


def test_a_conversation_without_a_message_yet_has_no_current(acme, fake):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    with scopes_disabled():
        Conversation.objects.filter(pk=conversation.pk).update(current=None)
    with scope(organization=acme.organization):
        mine = own_conversation(Asking(acme.annotator), project, conversation.pk)
        assert mine.current is None and services.waiting_assignment(mine) is None


def test_another_persons_or_organizations_rows_are_not_found(acme, globex, fake):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    colleague = member(acme.organization, Role.ANNOTATOR)
    with scope(organization=acme.organization):
        with pytest.raises(Http404):
            own_conversation(Asking(colleague), project, conversation.pk)
        with pytest.raises(Http404):  # the right person, another project's id
            own_conversation(Asking(acme.annotator), acme.project.__class__(pk=0), conversation.pk)
    with scope(organization=globex.organization):
        with pytest.raises(Http404):  # globex's project id and person, acme's conversation
            own_conversation(Asking(globex.annotator), globex.project, conversation.pk)
        with scopes_disabled():
            globex_lead = Membership.objects.get(user=globex.lead)
        assert Project.objects.get_for_member(globex_lead, acme.project.pk) is None
        assert Project.objects.get_for_member(globex_lead, globex.project.pk) == globex.project


def test_the_path_is_the_branch_walked_up_and_nothing_beside_it(acme, fake):
    project, endpoint = make_chat(acme, fake.url, max_turns=5)
    conversation, chosen, other, _ = branched(acme, project, endpoint)
    end = current(conversation)  # the first reply of the third turn, on the second branch
    walked, node = [], end
    with scopes_disabled():
        while node is not None:
            walked.append(node)
            node = node.parent
        everything = Message.objects.filter(conversation=conversation).count()
    with CaptureQueriesContext(connection) as reads:
        path = services.path_to(end)
    assert len(reads) == 1
    assert [m.pk for m in path] == [m.pk for m in reversed(walked)]
    assert [m.role for m in path] == ["system", "user", "assistant", "user", "assistant"]
    assert path[2].pk == other.pk and chosen.pk not in [m.pk for m in path]
    assert len(path) < everything  # the first branch's turn is not read
    for message in path:
        same(message, Message, message.pk)
    assert services.turns_on_path(end) == services.turns_on_path(end, path) == 2
    assert services.prefix(end)[-1] == {"role": "assistant", "content": end.text}


def test_the_locked_conversation_is_the_experts_in_the_scopes_organization(acme, globex, fake):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello?")
    with scope(organization=acme.organization), CaptureQueriesContext(connection) as reads:
        with transaction.atomic():
            locked = services._locked_conversation(conversation.pk, acme.annotator)
        names = (locked.project.name, locked.endpoint.model, locked.current.text)
    assert len(reads) == 3 and "FOR UPDATE OF c" in reads[1]["sql"]  # BEGIN, row, COMMIT
    same(locked, Conversation, conversation.pk)
    same(locked.project, Project, project.pk)
    same(locked.current, Message, locked.current_id)
    assert names == (project.name, "fake-model", locked.current.text)
    colleague = member(acme.organization, Role.ANNOTATOR)
    with scope(organization=acme.organization), pytest.raises(services.ChatRefused):
        services._locked_conversation(conversation.pk, colleague)
    with scope(organization=globex.organization), pytest.raises(services.ChatRefused):
        services._locked_conversation(conversation.pk, acme.annotator)  # the right person
    with scopes_disabled(), pytest.raises(ScopeError):
        services._locked_conversation(conversation.pk, acme.annotator)


def test_memberships_come_with_their_organizations_by_name(acme, globex):
    person = acme.annotator
    zeta = OrganizationFactory(name="Zeta", slug="zeta")
    with scopes_disabled():
        Membership.objects.create(user=person, organization=zeta, role=Role.LEAD)
        Membership.objects.create(user=person, organization=globex.organization, role=Role.LEAD)
    with CaptureQueriesContext(connection) as reads:
        found = memberships_of(person)
        names = [(m.organization.name, m.role) for m in found]
    assert len(reads) == 1
    assert names == [("Acme", Role.ANNOTATOR), ("Globex", Role.LEAD), ("Zeta", Role.LEAD)]
    assert all(m.user_id == person.pk for m in found)
    assert memberships_of(globex.annotator)[0].organization == globex.organization


def test_a_row_of_other_columns_is_refused():
    with pytest.raises(ValueError, match="the row has 3 columns, the models"):
        sqlrows.split((1, 2, 3), (Project,))


def test_a_submit_locks_only_its_own_assignment_of_the_organizations_project(acme, globex):
    from annotation.services import AssignmentRefused, _locked
    from tests.annotation.test_workspace import current, page, with_items

    with_items(acme.project)
    page(client_for(acme.annotator), acme.project)
    mine = current(acme.annotator)
    with (
        scope(organization=acme.organization),
        CaptureQueriesContext(connection) as reads,
        transaction.atomic(),
    ):
        locked = _locked(acme.project, mine.pk, acme.annotator)
    assert "FOR UPDATE" in reads[1]["sql"] and len(reads) == 3  # BEGIN, the row, COMMIT
    same(locked, Assignment, mine.pk)
    assert locked.project == acme.project
    colleague = member(acme.organization, Role.ANNOTATOR)
    globex_copy = Project(pk=acme.project.pk, organization_id=globex.organization.pk)
    for project, person in [(acme.project, colleague), (globex_copy, acme.annotator)]:
        with pytest.raises(AssignmentRefused):  # another's; a project id of another tenant
            _locked(project, mine.pk, person)


def test_sessions_are_read_as_djangos_and_an_expired_one_is_not(acme):
    from datetime import timedelta

    from django.contrib.sessions.backends.db import SessionStore as DjangosStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from tasks.sessions import SessionStore

    theirs = DjangosStore()
    theirs.update({"_auth_user_id": str(acme.lead.pk), "note": "<b>kept</b>"})
    theirs.create()
    ours = SessionStore(theirs.session_key)
    assert ours.load() == DjangosStore(theirs.session_key).load() == theirs._session
    assert ours.session_key == theirs.session_key
    Session.objects.filter(pk=theirs.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    expired = SessionStore(theirs.session_key)
    assert expired.load() == {} and expired.session_key is None  # a new one if saved
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {} and unknown.session_key is None
    # Through the middleware: a log-in works until its session expires.
    client = client_for(acme.annotator)
    annotate = f"/projects/{acme.project.pk}/annotate/"
    assert client.get(annotate).status_code == 200
    Session.objects.filter(pk=client.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert client.get(annotate).status_code == 302  # to the log-in page


@pytest.mark.django_db
def test_an_array_literal_is_read_back_as_the_values_and_free_text_is_refused():
    ids, digests = [3, 1, 10**15, -2], ["ab_test", "0f" * 32]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::bigint[], %s::text[], %s::bigint[]",
            [sqlrows.array(ids), sqlrows.array(digests), sqlrows.array([])],
        )
        assert cursor.fetchone() == (ids, digests, [])
    # Anything that would need quoting in a literal could change what it means: refused.
    for hostile in ("a,b", "", "null", "x}", '"', "a b", "Ab", "{1}", "1\\", "é", "1;DROP"):
        with pytest.raises(ValueError):
            sqlrows.array([1, hostile])
