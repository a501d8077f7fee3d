"""What an expert does in a chat, and what the worker does for them.

- ``start_conversation``: a conversation tree with its system message (and a seed's turns);
- ``send_turn``: the expert's message and a ``ChatTurn`` job for its replies;
- ``run_turn`` (the worker, ``chat.jobs.generate_turn``): the replies streamed in parallel
  through Redis, then written as the turn's prompt, candidates, item and assignment;
- ``judge_turn``: the expert's judgment, through ``annotation.services.store_judgment``,
  and the conversation going on from the chosen (or corrected) reply;
- ``branch``, ``end_conversation``, ``stop_turn``, ``retry_turn``.

Project settings (endpoints, recipes, replies per turn, turns) are checked here, not in views.
"""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Assignment, Judgment
from annotation.services import in_mode, store_judgment
from chat import streaming
from chat.models import ChatSettings, ChatTurn, Conversation, Message
from tasks import llm, sqlrows
from tasks.audit import Action, record
from tasks.generation import recipes_for, variant_key
from tasks.importers.rows import candidate_hash
from tasks.items import insert_items
from tasks.lifecycle import JobRefused, run_job, send
from tasks.models import Candidate, Item, LLMEndpoint, Project, Prompt
from tasks.text import content_hash

# The expert's own turn stays theirs while they read and judge it (the project's
# assignment timeout is for items handed out by the allocator).
TURN_HOLD = timedelta(days=1)


class ChatRefused(Exception):
    """What the expert asked cannot be done; the message says why, to them."""


def settings_of(project: Project) -> ChatSettings:
    # With its organization: the recipes and endpoints a turn may use are the organization's.
    found = ChatSettings.objects.select_related("organization").filter(project=project).first()
    if project.mode != Project.Mode.CHAT or found is None:
        raise ChatRefused("This project is not set up for chat.")
    return found


# --- settings ------------------------------------------------------------------------------


def allowed_endpoints(chat: ChatSettings):
    """The endpoints the lead allowed that the organization may still use."""
    usable = LLMEndpoint.for_organization(chat.organization)
    return usable.filter(pk__in=chat.endpoints.values("pk"))


def allowed_recipes(chat: ChatSettings) -> dict[str, list[dict]]:
    """The allowed recipes with at least ``replies_per_turn`` variants, by name."""
    recipes = recipes_for(chat.organization)
    return {
        name: variants
        for name, variants in recipes.items()
        if name in chat.recipes and len(variants) >= chat.replies_per_turn
    }


@transaction.atomic
def save_settings(
    *,
    project: Project,
    endpoints: list[LLMEndpoint],
    recipes: list[str],
    system_prompt: str,
    replies_per_turn: int,
    max_turns: int,
    concurrent_replies: int,
) -> ChatSettings:
    """Make ``project`` a chat project with these guardrails (or change them). A project
    that already has items of another mode cannot become one. The questions stay as the
    lead wrote them; they must fit the judging mode (a pair for 2 replies, else a ranking)."""
    from tasks.schema import validate_questions  # noqa: PLC0415 (tasks.schema imports models)

    if project.mode != Project.Mode.CHAT and project.items.exists():
        raise ValidationError({"project": "A project with items cannot become a chat project."})
    known = recipes_for(project.organization)
    unknown = [name for name in recipes if name not in known]
    if unknown:
        raise ValidationError({"recipes": f"No such recipe: {', '.join(unknown)}."})
    short = [name for name in recipes if len(known[name]) < replies_per_turn]
    if short:
        raise ValidationError(
            {"recipes": f"Fewer than {replies_per_turn} variants: {', '.join(short)}."}
        )
    usable = set(LLMEndpoint.for_organization(project.organization).values_list("pk", flat=True))
    if any(endpoint.pk not in usable for endpoint in endpoints):
        raise ValidationError({"endpoints": "That endpoint is not enabled for this organization."})
    chat, _ = ChatSettings.objects.update_or_create(
        project=project,
        defaults={
            "organization_id": project.organization_id,
            "recipes": list(recipes),
            "system_prompt": system_prompt,
            "replies_per_turn": replies_per_turn,
            "max_turns": max_turns,
            "concurrent_replies": concurrent_replies,
        },
    )
    chat.full_clean(exclude=["project", "organization", "endpoints"])
    chat.endpoints.set(endpoints)
    mode = chat.judging_mode
    questions = project.questions
    try:
        questions = validate_questions(questions, mode=mode)
    except ValidationError:
        from tasks.schema import default_questions  # noqa: PLC0415 (see above)

        questions = default_questions(mode)
    project.questions, project.mode = questions, Project.Mode.CHAT
    project.save(update_fields=["questions", "mode"])
    record(
        Action.CHAT_SETTINGS_CHANGED,
        organization=project.organization_id,
        obj=chat,
        object_type="chat",
        data={
            "project": project.pk,
            "endpoints": sorted(endpoint.name for endpoint in endpoints),
            "recipes": list(recipes),
            "system_prompt": system_prompt,
            "replies_per_turn": replies_per_turn,
            "max_turns": max_turns,
            "concurrent_replies": concurrent_replies,
        },
    )
    return chat


# --- the conversation ----------------------------------------------------------------------


@transaction.atomic
def start_conversation(
    *,
    project: Project,
    expert,
    endpoint_id: int,
    recipe_name: str,
    seed_prompt: Prompt | None = None,
) -> Conversation:
    """A new conversation of ``expert``; with a seed, its turns are the start, and a seed
    that ends with a user turn has its replies asked for at once."""
    chat = settings_of(project)
    endpoint = allowed_endpoints(chat).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise ChatRefused("Choose one of the model endpoints this project allows.")
    if recipe_name not in allowed_recipes(chat):
        raise ChatRefused("Choose one of the recipes this project allows.")
    if seed_prompt is not None and seed_prompt.project_id != project.pk:
        raise ChatRefused("That seed is not one of this project's prompts.")
    conversation = Conversation.objects.create(
        organization_id=project.organization_id,
        project=project,
        expert=expert,
        seed_prompt=seed_prompt,
        endpoint=endpoint,
        recipe_name=recipe_name,
        system_prompt=chat.system_prompt,
    )
    root = _add(conversation, None, Message.Role.SYSTEM, chat.system_prompt)
    current = root
    if seed_prompt is not None:
        turns = seed_prompt.messages or [{"role": "user", "content": seed_prompt.text}]
        for turn in turns:
            if turn["role"] == "system":
                root.text = turn["content"]
                root.save(update_fields=["text"])
            else:
                current = _add(conversation, current, turn["role"], turn["content"])
    conversation.current = current
    conversation.save(update_fields=["current"])
    if current.role == Message.Role.USER:
        _queue_turn(conversation, current, chat, actor=expert)
    return conversation


def _add(conversation, parent, role, text, **fields) -> Message:
    return Message.objects.create(
        organization_id=conversation.organization_id,
        conversation=conversation,
        parent=parent,
        role=role,
        text=text,
        depth=0 if parent is None else parent.depth + 1,
        **fields,
    )


def path_to(message: Message) -> list[Message]:
    """The messages from the root down to ``message``: only those, in one query up the
    tree (a conversation's other branches are not read)."""
    rows = sqlrows.select_all(_PATH, [message.pk, message.organization_id], (Message,))
    return [row[0] for row in reversed(rows)]


# path_to's walk up the tree, written out (tasks.sqlrows): read by every message, judgment
# and next state. ``up`` counts the steps from ``message``, so the root comes last.
_PATH = f"""
WITH RECURSIVE path AS (
    SELECT m.*, 0 AS up FROM chat_message m WHERE m.id = %s AND m.organization_id = %s
    UNION ALL
    SELECT m.*, path.up + 1 FROM chat_message m
    JOIN path ON m.id = path.parent_id AND m.organization_id = path.organization_id
)
SELECT {sqlrows.columns(None, Message)} FROM path ORDER BY up
"""  # noqa: S608 (only the model's column names are formatted in)


def prefix(message: Message) -> list[dict]:
    """The conversation up to and including ``message`` as chat messages (an empty system
    message left out): the turn's prompt."""
    return [
        {"role": m.role, "content": m.text}
        for m in path_to(message)
        if m.role != Message.Role.SYSTEM or m.text.strip()
    ]


def turns_on_path(message: Message, path: list[Message] | None = None) -> int:
    """The user turns on the way to ``message`` (``path``: path_to(message), if read)."""
    return sum(1 for m in (path or path_to(message)) if m.role == Message.Role.USER)


def conversation_row(
    conversation_id: int, expert_id: int, organization_id: int, *, project_id=None, lock=False
) -> Conversation | None:
    """The expert's conversation with its project, endpoint and current message, in one
    query (``lock``: its row locked, the others not); None if it is not theirs, of the
    organization (and of ``project_id``, if given)."""
    sql, params = _CONVERSATION, [conversation_id, expert_id, organization_id]
    if project_id is not None:
        sql, params = f"{sql} AND c.project_id = %s", [*params, project_id]
    found = sqlrows.select(f"{sql} FOR UPDATE OF c" if lock else sql, params, _CONVERSATION_ROW)
    if found is None:
        return None
    conversation, conversation.project, conversation.endpoint, current = found
    conversation.current = current if conversation.current_id is not None else None
    return conversation


# conversation_row's statement, written out (tasks.sqlrows): read two or three times by
# every message, judgment and next state.
_CONVERSATION_ROW = (Conversation, Project, LLMEndpoint, Message)
_CONVERSATION = f"""
SELECT {sqlrows.columns("c", Conversation)}, {sqlrows.columns("p", Project)},
    {sqlrows.columns("e", LLMEndpoint)}, {sqlrows.columns("m", Message)}
FROM chat_conversation c
JOIN tasks_project p ON p.id = c.project_id
JOIN tasks_llmendpoint e ON e.id = c.endpoint_id
LEFT JOIN chat_message m ON m.id = c.current_id
WHERE c.id = %s AND c.expert_id = %s AND c.organization_id = %s"""  # noqa: S608 (columns only)


def _locked_conversation(conversation_id: int, expert) -> Conversation:
    """The expert's conversation in the caller's organization scope, locked."""
    organization_id = sqlrows.scope_organization_id()
    conversation = conversation_row(conversation_id, expert.pk, organization_id, lock=True)
    if conversation is None:
        raise ChatRefused("This conversation is not yours.")
    return conversation


@transaction.atomic
def send_turn(*, conversation_id: int, expert, text: str) -> ChatTurn:
    """The expert's next message under the conversation's current reply, and the job that
    asks the model for its replies."""
    conversation = _locked_conversation(conversation_id, expert)
    chat = settings_of(conversation.project)
    text = (text or "").strip()
    if not text:
        raise ChatRefused("Write a message first.")
    if conversation.status != Conversation.Status.OPEN:
        raise ChatRefused("This conversation has ended.")
    current = conversation.current
    if current is None or current.role == Message.Role.USER:
        raise ChatRefused("The last message is still waiting for its replies.")
    if current.role == Message.Role.ASSISTANT and current.item_id and not _judged(current, expert):
        raise ChatRefused("Judge the replies before you go on.")
    if turns_on_path(current) >= chat.max_turns:
        raise ChatRefused(f"This project allows {chat.max_turns} turns per conversation.")
    message = _add(conversation, current, Message.Role.USER, text[:20_000])
    conversation.current = message
    conversation.save(update_fields=["current"])
    return _queue_turn(conversation, message, chat, actor=expert, tries=0)


def _judged(reply: Message, expert) -> bool:
    return Judgment.objects.filter(item_id=reply.item_id, annotator_id=expert.pk).exists()


def _queue_turn(
    conversation, message, chat: ChatSettings, *, actor, tries: int | None = None
) -> ChatTurn:
    """The turn's job, queued; ``tries``: the message's earlier turns (0 for a message just
    written; counted when not given)."""
    from chat.jobs import generate_turn  # noqa: PLC0415 (chat.jobs imports this module)

    endpoint = conversation.endpoint
    recipe = allowed_recipes(chat).get(conversation.recipe_name)
    if recipe is None or not allowed_endpoints(chat).filter(pk=endpoint.pk).exists():
        raise ChatRefused("The lead no longer allows this conversation's model or recipe.")
    if tries is None:
        tries = ChatTurn.objects.filter(user_message=message).count()
    variants = []
    for variant in recipe[: chat.replies_per_turn]:
        # A retry asks with other seeds: the same seed would give the same failed replies.
        variant = {**variant, "seed": variant["seed"] + 1000 * tries}
        variant["key"] = variant_key(endpoint.model, variant)
        variants.append(variant)
    # Replies are shown in a random order, so that a variant has no fixed place on screen.
    random.shuffle(variants)
    turn = ChatTurn.objects.create(
        organization_id=conversation.organization_id,
        created_by=actor,
        conversation=conversation,
        user_message=message,
        endpoint=endpoint,
        model=endpoint.model,
        recipe_name=conversation.recipe_name,
        variants=variants,
    )
    streaming.open_queued(turn.pk)
    send(generate_turn, turn)
    return turn


@transaction.atomic
def retry_turn(*, conversation_id: int, expert) -> ChatTurn:
    """Ask again for the replies of the conversation's waiting message, once its last
    turn failed or was stopped."""
    conversation = _locked_conversation(conversation_id, expert)
    chat = settings_of(conversation.project)
    message = conversation.current
    if message is None or message.role != Message.Role.USER:
        raise ChatRefused("There is nothing to retry.")
    last = ChatTurn.objects.filter(user_message=message).order_by("-pk").first()
    if last is not None and not last.finished:
        raise ChatRefused("The replies are still being written.")
    if last is not None and last.status == ChatTurn.Status.SUCCEEDED:
        raise ChatRefused("This turn already has its replies.")
    return _queue_turn(conversation, message, chat, actor=expert)


def stop_turn(*, turn: ChatTurn, expert) -> None:
    """Ask the worker to stop; a turn still queued is stopped at once."""
    if turn.conversation.expert_id != expert.pk:
        raise ChatRefused("This conversation is not yours.")
    streaming.stop(turn.pk)
    stopped = ChatTurn.objects.filter(pk=turn.pk, status=ChatTurn.Status.QUEUED).update(
        status=ChatTurn.Status.FAILED, error=STOPPED, finished_at=timezone.now()
    )
    if stopped:  # no worker will end its stream
        streaming.Channel(turn.pk).end(ChatTurn.Status.FAILED, STOPPED)


STOPPED = "You stopped this turn."


@transaction.atomic
def end_conversation(*, conversation_id: int, expert) -> Conversation:
    conversation = _locked_conversation(conversation_id, expert)
    conversation.status = Conversation.Status.ENDED
    conversation.save(update_fields=["status"])
    return conversation


@transaction.atomic
def branch(*, conversation_id: int, expert, message_id: int) -> Conversation:
    """Go back to an earlier turn and go on from another of its replies."""
    conversation = _locked_conversation(conversation_id, expert)
    if conversation.status != Conversation.Status.OPEN:
        raise ChatRefused("This conversation has ended.")
    reply = Message.objects.filter(
        pk=message_id, conversation=conversation, role=Message.Role.ASSISTANT
    ).first()
    if reply is None:
        raise ChatRefused("Choose one of this conversation's replies.")
    if reply.item_id and not _judged(reply, expert):
        raise ChatRefused("Judge the replies before you go on.")
    conversation.current = reply
    conversation.save(update_fields=["current"])
    return conversation


# --- judging -------------------------------------------------------------------------------


def waiting_assignment(conversation: Conversation) -> Assignment | None:
    """The expert's open assignment for the replies the conversation waits on, with the
    project, item and prompt the judging form reads (one query)."""
    current = conversation.current
    if current is None or current.role != Message.Role.ASSISTANT or not current.item_id:
        return None
    found = sqlrows.select(
        _WAITING, [current.item_id, conversation.expert_id, conversation.organization_id], _JOINED
    )
    if found is None or found[0].status != Assignment.Status.ACTIVE:
        return None
    assignment, item, item.prompt = found
    assignment.item, assignment.project = item, conversation.project
    return assignment


# waiting_assignment's row (one per item and person), written out (tasks.sqlrows).
_JOINED = (Assignment, Item, Prompt)
_WAITING = f"""
SELECT {sqlrows.columns("a", Assignment)}, {sqlrows.columns("i", Item)},
    {sqlrows.columns("p", Prompt)}
FROM annotation_assignment a
JOIN tasks_item i ON i.id = a.item_id JOIN tasks_prompt p ON p.id = i.prompt_id
WHERE a.item_id = %s AND a.annotator_id = %s AND a.organization_id = %s
"""  # noqa: S608 (only the models' column names are formatted in)


def open_turn(conversation: Conversation) -> tuple[Message, Assignment] | None:
    """The user message whose replies wait for the expert's judgment, and its assignment."""
    assignment = waiting_assignment(conversation)
    return None if assignment is None else (conversation.current.parent, assignment)


@transaction.atomic
def judge_turn(
    *, conversation_id: int, expert, answers: dict[str, Any], time_spent_ms: int = 0
) -> Judgment:
    """The expert's judgment of the turn's replies (the project's questions, checked by the
    annotation app); the conversation goes on from the corrected reply if there is one,
    else the preferred (for a tie or "both bad", the first shown)."""
    conversation = _locked_conversation(conversation_id, expert)
    settings_of(conversation.project)  # still a chat project
    waiting = open_turn(conversation)
    if waiting is None:
        raise ChatRefused("There are no replies to judge.")
    message, assignment = waiting
    # store_judgment judges the turn in its item's mode (annotation.services.judged_as), in
    # this transaction (an error fails the whole judgment).
    judgment = store_judgment(
        project=conversation.project,
        assignment_id=assignment.pk,
        annotator=expert,
        answers=answers,
        time_spent_ms=time_spent_ms,
    )
    replies = {m.candidate_id: m for m in message.children.filter(role=Message.Role.ASSISTANT)}
    if judgment.corrected_id and judgment.corrected_id in replies:
        chosen = replies[judgment.corrected_id]  # the correction repeats a reply
    elif judgment.corrected_id:
        chosen = _add(
            conversation,
            message,
            Message.Role.ASSISTANT,
            judgment.corrected.text,
            candidate_id=judgment.corrected_id,
            item_id=message.item_id,
            corrected=True,
            order=len(replies) + 1,
        )
    elif judgment.chosen_id in replies:
        chosen = replies[judgment.chosen_id]
    else:
        chosen = None
    if chosen is not None:
        chosen.chosen = True
        chosen.save(update_fields=["chosen"])
    conversation.current = chosen or replies[assignment.display_order[0]]
    conversation.save(update_fields=["current"])
    return judgment


# --- the worker ----------------------------------------------------------------------------


def run_turn(turn_id: int) -> ChatTurn:
    """Stream the turn's replies into Redis, all at once, then write them: the turn's
    prompt, one candidate per distinct reply, the item and the expert's assignment.
    A model that fails or stops fails the turn with a message the expert can act on.
    The streaming holds no database transaction open (run_job's ``prepare``): only the
    writing at the end is one."""
    streamed: dict = {}
    turn = run_job(
        ChatTurn.objects.select_related("conversation__project", "user_message", "endpoint"),
        turn_id,
        lambda turn: _store(turn, **streamed),
        outcome="The replies could not be written",
        fields=["item"],
        prepare=lambda turn: streamed.update(_generate(turn)),
    )
    if turn.status == ChatTurn.Status.FAILED:
        streaming.Channel(turn.pk).end("failed", turn.error)
    elif turn.status == ChatTurn.Status.SUCCEEDED:
        streaming.Channel(turn.pk).end("succeeded")
    return turn


def _generate(turn: ChatTurn) -> dict:
    chat = ChatSettings.objects.get(project_id=turn.conversation.project_id)
    messages = prefix(turn.user_message)
    channel = streaming.Channel(turn.pk)
    channel.reset()
    if streaming.stop_asked(turn.pk):
        raise JobRefused(STOPPED)
    completions = _stream_all(turn, chat, messages, channel)
    return {"chat": chat, "messages": messages, "completions": completions}


def _stream_all(turn: ChatTurn, chat: ChatSettings, messages, channel) -> list[llm.Completion]:
    endpoint = turn.endpoint
    client = streaming.client_for(endpoint)
    checked = {"at": 0.0, "stop": False}
    lock = threading.Lock()

    def stopped() -> bool:
        # Asked at most five times a second: a Redis round trip per token would cost more
        # than the token.
        with lock:
            now = time.monotonic()
            if not checked["stop"] and now - checked["at"] > 0.2:
                checked["at"], checked["stop"] = now, streaming.stop_asked(turn.pk)
            return checked["stop"]

    def one(index: int, variant: dict) -> llm.Completion:
        asked = _with_system(messages, variant)
        try:
            with (
                streaming.organization_slot(
                    endpoint, turn.organization_id, chat.concurrent_replies
                ),
                llm.endpoint_slot(endpoint),
            ):
                done = streaming.stream_reply(
                    client,
                    endpoint,
                    turn.model,
                    asked,
                    variant,
                    emit=lambda text: channel.token(index, text),
                    stopped=stopped,
                )
        except (llm.GenerationError, streaming.Stopped) as error:
            channel.reply_done(index, error=str(error) or STOPPED)
            raise
        channel.reply_done(index)
        return done

    with ThreadPoolExecutor(max_workers=len(turn.variants)) as pool:
        futures = [pool.submit(one, i, v) for i, v in enumerate(turn.variants)]
        results, errors, stopped_here = [], [], False
        for future in futures:
            try:
                results.append(future.result())
            except streaming.Stopped:
                stopped_here = True
            except llm.GenerationError as error:
                errors.append(str(error))
                checked["stop"] = True  # the other replies are of no use without this one
    if errors:
        raise JobRefused(f"{errors[0]} Retry when it is back.")
    if stopped_here:
        raise JobRefused(STOPPED)
    return results


def _with_system(messages: list[dict], variant: dict) -> list[dict]:
    """A variant's own system prompt takes the place of the conversation's."""
    if not variant.get("system_prompt"):
        return messages
    turns = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": variant["system_prompt"]}, *turns]


def _store(turn: ChatTurn, chat: ChatSettings, messages, completions: list[llm.Completion]):
    conversation, message = turn.conversation, turn.user_message
    project = conversation.project
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        external_id=f"chat-{conversation.pk}-{message.pk}",
        defaults={
            "organization_id": project.organization_id,
            "text": message.text,
            "messages": messages,
            "metadata": {"chat": {"conversation": conversation.pk, "message": message.pk}},
            "source": "chat",
            "content_hash": content_hash(json.dumps(messages, ensure_ascii=False)),
        },
    )
    made: list[tuple[dict, Candidate]] = []
    for variant, done in zip(turn.variants, completions, strict=True):
        text_hash = candidate_hash(done.text)
        if any(c.content_hash == text_hash for _, c in made):
            continue  # the same reply twice is one candidate
        parameters = {k: v for k, v in variant.items() if k != "key"}
        candidate, _ = Candidate.objects.get_or_create(
            prompt=prompt,
            content_hash=text_hash,
            defaults={
                "organization_id": project.organization_id,
                "text": done.text,
                "source": Candidate.Source.CHAT,
                "source_key": variant["key"],
                "model": done.model,
                "finish_reason": done.finish_reason,
                "parameters": {
                    **parameters,
                    "recipe": turn.recipe_name,
                    "endpoint": turn.endpoint.name,
                    "chat_turn": turn.pk,
                },
            },
        )
        made.append((variant, candidate))
    if len(made) < 2:
        raise JobRefused("The model gave the same reply every time; retry for new replies.")
    ids = tuple(c.pk for _, c in made)
    # The item stores the mode its replies are judged in; the pages read it back from there.
    item_id = insert_items(in_mode(project, chat.judging_mode), [(prompt.pk, ids)])[0]
    Assignment.objects.create(
        organization_id=project.organization_id,
        project=project,
        item_id=item_id,
        annotator_id=conversation.expert_id,
        display_order=list(ids),
        expires_at=timezone.now() + TURN_HOLD,
    )
    Item.objects.filter(pk=item_id).update(assignment_count=F("assignment_count") + 1)
    for order, (_, candidate) in enumerate(made, start=1):
        _add(
            conversation,
            message,
            Message.Role.ASSISTANT,
            candidate.text,
            candidate=candidate,
            item_id=item_id,
            order=order,
        )
    message.item_id = item_id
    message.save(update_fields=["item"])
    # The expert judges from the first reply on; its place in the tree is kept in current.
    first = message.children.order_by("order").first()
    Conversation.objects.filter(pk=conversation.pk).update(current=first)
    turn.item_id = item_id
