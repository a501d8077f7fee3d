"""What the chat pages show: a conversation's path and its state for the expert, and every
conversation's tree for the lead. Reads only; the writes are in ``chat.services``."""

from dataclasses import dataclass, field
from functools import lru_cache

from annotation.rendering import render_markdown
from chat import services
from chat.models import ChatSettings, ChatTurn, Conversation, Message
from tasks.models import Project

# A conversation's page shows its whole path, each reply with its turn's other replies, and
# is rendered again on every message, judgment and reload: about 50 messages by the tenth
# turn, a quarter of the page's CPU in Markdown (profiled). A message's text
# never changes, so each process keeps the HTML of the texts it rendered last.
_html = lru_cache(maxsize=4096)(render_markdown)


@dataclass
class Shown:
    message: Message
    html: str
    others: list["Shown"] = field(default_factory=list)  # the turn's other replies


def conversation_context(conversation: Conversation, chat: ChatSettings) -> dict:
    """The conversation as the page shows it: ``transcript`` (the path to the current
    message, each reply with the turn's other replies, which one may branch from) and
    ``state``: writing, streaming, failed, judging, limit or ended."""
    current = conversation.current
    path = services.path_to(current) if current else []
    context: dict = {"conversation": conversation, "turn": None, "assignment": None}
    waiting = services.waiting_assignment(conversation) if current else None
    if waiting is not None:
        path = path[:-1]  # the replies are shown as the candidates being judged
        context["assignment"] = waiting
        state = "judging"
    elif conversation.status == Conversation.Status.ENDED:
        state = "ended"
    elif current is not None and current.role == Message.Role.USER:
        turn = ChatTurn.objects.filter(user_message=current).order_by("-pk").first()
        context["turn"] = turn
        state = "failed" if turn is None or turn.status in ChatTurn.FINISHED else "streaming"
        context["replies"] = range(len(turn.variants)) if turn else range(0)
    elif current is not None and services.turns_on_path(current, path) >= chat.max_turns:
        state = "limit"
    else:
        state = "writing"
    replies = {}
    for message in Message.objects.filter(
        parent_id__in=[m.pk for m in path if m.role == Message.Role.USER],
        role=Message.Role.ASSISTANT,
    ):
        replies.setdefault(message.parent_id, []).append(message)
    transcript = []
    for message in path:
        if message.role == Message.Role.SYSTEM and not message.text.strip():
            continue
        shown = Shown(message, _html(message.text))
        if message.role == Message.Role.ASSISTANT:
            shown.others = [
                Shown(other, _html(other.text))
                for other in replies.get(message.parent_id, [])
                if other.pk != message.pk
            ]
        transcript.append(shown)
    context.update({"state": state, "transcript": transcript})
    return context


@dataclass
class Node:
    message: Message
    children: list["Node"] = field(default_factory=list)


def trees(project: Project, limit: int = 100) -> list[tuple[Conversation, list[Node]]]:
    """The project's latest conversations, each with its tree (roots first)."""
    conversations = list(
        Conversation.objects.filter(project=project).select_related("expert")[:limit]
    )
    nodes: dict[int, Node] = {}
    roots: dict[int, list[Node]] = {c.pk: [] for c in conversations}
    for message in Message.objects.filter(conversation__in=conversations).order_by(
        "depth", "order", "pk"
    ):
        node = nodes[message.pk] = Node(message)
        parent = nodes.get(message.parent_id)
        (parent.children if parent else roots[message.conversation_id]).append(node)
    return [(c, roots[c.pk]) for c in conversations]
