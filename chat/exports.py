"""The conversation trees as OpenAssistant-like JSONL (one message a line: message_id,
parent_id, role, text, rank, labels), for teams that train on trees.

``rank`` is the reply's place in the expert's judgment of its turn (0 is best; a
correction is 0 and the replies follow it); null for messages that were not judged.
``labels`` holds what the judgment said about that reply: chosen, corrected, the outcome,
the preference label and strength, and its rubric scores. Streamed a conversation at a
time, so a large project is never held in memory."""

import json

from django_scopes import scope

from annotation.models import Judgment
from chat.models import Conversation, Message
from tasks.models import Project


def tree_lines(project: Project):
    # A streamed body is written after the view returned, outside the request's scope.
    with scope(organization=project.organization):
        yield from _lines(project)


def _lines(project: Project):
    conversations = Conversation.objects.filter(project=project).order_by("pk")
    for conversation in conversations.iterator(chunk_size=100):
        messages = list(Message.objects.filter(conversation=conversation).order_by("pk"))
        items = {m.item_id for m in messages if m.item_id}
        judgments = {
            j.item_id: j
            for j in Judgment.objects.filter(item_id__in=items, annotator_id=conversation.expert_id)
        }
        for message in messages:
            rank, labels = _judged(message, judgments.get(message.item_id))
            record = {
                "message_id": f"chat-{message.pk}",
                "parent_id": f"chat-{message.parent_id}" if message.parent_id else None,
                "conversation_id": f"chat-conversation-{conversation.pk}",
                "role": message.role,
                "text": message.text,
                "rank": rank,
                "labels": labels,
                "candidate_id": message.candidate_id,
                "item_id": message.item_id,
                "created_at": message.created_at.isoformat(),
            }
            yield json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def _judged(message: Message, judgment: Judgment | None) -> tuple[int | None, dict]:
    if message.role != Message.Role.ASSISTANT or judgment is None:
        return None, {}
    labels = {
        "chosen": message.chosen,
        "corrected": message.corrected,
        "outcome": judgment.outcome,
        "label": judgment.label,
        "strength": judgment.strength,
        "rubric": judgment.rubric_scores.get(str(message.candidate_id), {}),
    }
    order = list(judgment.ranking) or [
        pk for pk in (judgment.chosen_id, judgment.rejected_id) if pk is not None
    ]
    if judgment.corrected_id and judgment.corrected_id not in order:
        order = [judgment.corrected_id, *order]
    if judgment.outcome in (Judgment.Outcome.TIE, Judgment.Outcome.BOTH_BAD):
        # The replies are equal: all 0, or all 1 behind a correction.
        return (0 if message.corrected or not judgment.corrected_id else 1), labels
    rank = order.index(message.candidate_id) if message.candidate_id in order else None
    return rank, labels
