"""The audit trail of Chat & Choose: the lead's guardrails (with what they allow) and every
turn's job, as for the other jobs (asked for, written, failed)."""

import pytest
from django_scopes import scopes_disabled

from tasks.models import AuditEvent
from tests.chat import test_chat
from tests.chat.test_chat import judge, make_chat, say, start

pytestmark = pytest.mark.django_db
fake = test_chat.fake  # the streaming server fixture of the chat tests


def events(tenant, action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(organization=tenant.organization, action=action))


def test_saving_the_guardrails_is_recorded_with_what_they_allow(acme, fake):
    project, endpoint = make_chat(acme, fake.url, replies=3, max_turns=5, concurrent=2)
    (saved,) = events(acme, "chat.settings_changed")
    assert saved.data == {
        "project": project.pk,
        "endpoints": [endpoint.name],
        "recipes": ["Four"],
        "system_prompt": "Be kind.",
        "replies_per_turn": 3,
        "max_turns": 5,
        "concurrent_replies": 2,
    }


def test_a_turn_asked_written_and_failed_is_in_the_trail(acme, fake):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    written = say(acme, conversation, "Hello")
    assert written.status == "succeeded"
    (asked,) = events(acme, "chat_turn.created")
    assert asked.object_id == str(written.pk) and asked.data["project"] == project.pk
    (done,) = events(acme, "chat_turn.succeeded")
    assert done.object_id == str(written.pk) and done.data["conversation"] == conversation.pk

    judge(acme, conversation, preference="A is much better")
    fake.down = True
    failed = say(acme, conversation, "Again")
    assert failed.status == "failed"
    (lost,) = events(acme, "chat_turn.failed")
    assert lost.object_id == str(failed.pk) and "connect" in lost.data.get("error", "").lower()
