"""The chat pages: an expert's conversations and the conversation itself; the lead's view of
every conversation's tree, the guardrails and the tree download.

Streaming choice: the page polls the turn's Redis stream with a cursor (``events``) every
50 ms until the first words, then every 200 ms (every 500 ms while it waits for a worker,
after its first second), and not at all otherwise. With the key the page was given, a poll
is answered from the stream alone (``chat.middleware``: one Redis round trip, about 1 ms
of the web server's CPU); otherwise, and when only the turn's row can tell (no stream, a
silent one), it reads the session, the user and their memberships as on every page, then
one indexed row and one XRANGE. Either way it holds a web thread for milliseconds; a
server-sent events connection would hold one of gunicorn's 48 threads for the whole reply,
and 50 experts waiting for replies at once would leave none for annotators. The measured
cost is in bench/chat_load.py and the README."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from annotation.services import AssignmentRefused, in_mode
from annotation.workspace import answers_from_form, context_for
from chat import exports, reading, services, streaming
from chat.forms import SettingsForm, StartForm
from chat.middleware import events_answer
from chat.models import ChatSettings, ChatTurn, Conversation
from tasks.decorators import lead_project, membership_required
from tasks.models import Project


def chat_project(request, project_id: int) -> tuple[Project, ChatSettings]:
    """A chat project this member may work on; anything else is a 404."""
    project = Project.objects.get_for_member(request.membership, project_id)
    if project is None or project.mode != Project.Mode.CHAT:
        raise Http404("No such chat project.")
    chat = ChatSettings.objects.filter(project=project).first()
    if chat is None:
        raise Http404("This project is not set up for chat yet.")
    return project, chat


def own_conversation(request, project: Project, conversation_id: int) -> Conversation:
    """The expert's own conversation of ``project``, with its project, endpoint and current
    message; anyone else's (another organization's too) is a 404."""
    conversation = services.conversation_row(
        conversation_id, request.user.pk, project.organization_id, project_id=project.pk
    )
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _fragment(request) -> bool:
    return request.headers.get("X-Chosen-Fragment") == "1"


@membership_required
def home(request, project_id: int):
    """The expert's conversations in a project, and a new one."""
    project, chat = chat_project(request, project_id)
    form = StartForm(chat=chat)
    conversations = Conversation.objects.filter(project=project, expert=request.user)
    return render(
        request,
        "chat/home.html",
        {"project": project, "chat": chat, "form": form, "conversations": conversations},
    )


@membership_required
@require_POST
def start(request, project_id: int):
    project, chat = chat_project(request, project_id)
    form = StartForm(request.POST, chat=chat)
    if form.is_valid():
        try:
            conversation = services.start_conversation(
                project=project,
                expert=request.user,
                endpoint_id=form.cleaned_data["endpoint"].pk,
                recipe_name=form.cleaned_data["recipe"],
                seed_prompt=form.cleaned_data.get("seed"),
            )
        except services.ChatRefused as refused:
            form.add_error(None, str(refused))
        else:
            return redirect("chat:conversation", project.pk, conversation.pk)
    conversations = Conversation.objects.filter(project=project, expert=request.user)
    context = {"project": project, "chat": chat, "form": form, "conversations": conversations}
    return render(request, "chat/home.html", context, status=400)


def _workspace(
    request, project, chat, conversation, *, message="", level="info", answers=None, errors=None
):
    context = reading.conversation_context(conversation, chat)
    context.update({"project": project, "chat": chat, "message": message, "message_level": level})
    if context["state"] == "streaming" and context["turn"] is not None:
        context["events_key"] = streaming.events_key(
            project.pk, context["turn"].pk, request.session.session_key
        )
    if context["state"] == "judging":
        # The annotate page's form, in the mode of the turn's item (context_for's project).
        context.update(context_for(context["assignment"], answers=answers, errors=errors))
        context["chat_project"] = project
    return context


def _answer(request, project, chat, conversation, *, status=200, **kwargs):
    context = _workspace(request, project, chat, conversation, **kwargs)
    if _fragment(request):
        html = render_to_string("chat/_workspace.html", context, request=request)
        return JsonResponse({"html": html, "message": kwargs.get("message", "")}, status=status)
    return render(request, "chat/conversation.html", context, status=status)


@membership_required
def conversation(request, project_id: int, conversation_id: int):
    project, chat = chat_project(request, project_id)
    return _answer(request, project, chat, own_conversation(request, project, conversation_id))


def _act(request, project_id, conversation_id, action):
    project, chat = chat_project(request, project_id)
    conversation = own_conversation(request, project, conversation_id)
    try:
        action(conversation)
    except services.ChatRefused as refused:
        conversation = own_conversation(request, project, conversation_id)
        return _answer(
            request, project, chat, conversation, status=409, message=str(refused), level="error"
        )
    conversation = own_conversation(request, project, conversation_id)  # as the action left it
    if not _fragment(request):
        return redirect("chat:conversation", project.pk, conversation.pk)
    return _answer(request, project, chat, conversation)


@membership_required
@require_POST
def send(request, project_id: int, conversation_id: int):
    """The expert's message; the answer shows it with the replies about to stream in."""
    return _act(
        request,
        project_id,
        conversation_id,
        lambda c: services.send_turn(
            conversation_id=c.pk, expert=request.user, text=request.POST.get("text", "")
        ),
    )


@membership_required
@require_POST
def retry(request, project_id: int, conversation_id: int):
    return _act(
        request,
        project_id,
        conversation_id,
        lambda c: services.retry_turn(conversation_id=c.pk, expert=request.user),
    )


@membership_required
@require_POST
def end(request, project_id: int, conversation_id: int):
    return _act(
        request,
        project_id,
        conversation_id,
        lambda c: services.end_conversation(conversation_id=c.pk, expert=request.user),
    )


@membership_required
@require_POST
def branch(request, project_id: int, conversation_id: int):
    """Go on from another reply of an earlier turn (its id in the form)."""
    try:
        message_id = int(request.POST.get("message", ""))
    except ValueError:
        message_id = 0
    return _act(
        request,
        project_id,
        conversation_id,
        lambda c: services.branch(conversation_id=c.pk, expert=request.user, message_id=message_id),
    )


@membership_required
@require_POST
def judge(request, project_id: int, conversation_id: int):
    """The judgment of the turn's replies (the annotate page's form and script); the answer
    is the conversation, ready for the next message."""
    project, chat = chat_project(request, project_id)
    conversation = own_conversation(request, project, conversation_id)
    waiting = services.waiting_assignment(conversation)
    mode = waiting.item.mode if waiting else chat.judging_mode
    answers = answers_from_form(in_mode(project, mode), request.POST)
    try:
        time_spent = int(request.POST.get("time_spent_ms") or 0)
    except ValueError:
        time_spent = 0
    try:
        services.judge_turn(
            conversation_id=conversation.pk,
            expert=request.user,
            answers=answers,
            time_spent_ms=time_spent,
        )
    except (services.ChatRefused, AssignmentRefused) as refused:
        return _answer(
            request, project, chat, conversation, status=409, message=str(refused), level="error"
        )
    except ValidationError as invalid:
        return _answer(
            request,
            project,
            chat,
            conversation,
            status=400,
            message="Some answers need another look.",
            level="error",
            answers=answers,
            errors=invalid.message_dict,
        )
    conversation = own_conversation(request, project, conversation_id)
    if not _fragment(request):
        return redirect("chat:conversation", project.pk, conversation.pk)
    return _answer(request, project, chat, conversation, message="Saved.", level="success")


def _own_turn(request, project_id: int, turn_id: int) -> ChatTurn:
    turn = (
        ChatTurn.objects.filter(
            pk=turn_id,
            conversation__project_id=project_id,
            conversation__expert=request.user,
            conversation__project__mode=Project.Mode.CHAT,
        )
        .only("pk", "status", "error")
        .first()
    )
    if turn is None:
        raise Http404("No such turn.")
    return turn


@membership_required
@require_GET
def events(request, project_id: int, turn_id: int):
    """What the worker streamed since the cursor ``after``, and the turn's state."""
    turn = _own_turn(request, project_id, turn_id)
    after = streaming.cursor(request.GET.get("after"))
    # A turn no worker has taken yet has nothing in Redis: the row is the whole answer.
    queued = turn.status == ChatTurn.Status.QUEUED
    found = [] if queued else streaming.read(turn.pk, after)
    message = turn.error if turn.status == ChatTurn.Status.FAILED else ""
    return events_answer(found, turn.status, turn.finished, message)


@membership_required
@require_POST
def stop(request, project_id: int, turn_id: int):
    turn = ChatTurn.objects.select_related("conversation").get(
        pk=_own_turn(request, project_id, turn_id).pk
    )
    services.stop_turn(turn=turn, expert=request.user)
    return JsonResponse({"stopping": True})


# --- the lead's pages ----------------------------------------------------------------------


@membership_required
def conversations(request, project_id: int):
    """Every conversation of a chat project, each as its tree."""
    project = lead_project(request, project_id)
    trees = reading.trees(project)
    return render(
        request,
        "chat/conversations.html",
        {
            "project": project,
            "trees": trees,
            "chat": ChatSettings.objects.filter(project=project).first(),
        },
    )


@membership_required
def chat_settings(request, project_id: int):
    """The guardrails: endpoints, recipes, replies per turn, turns, the organization's
    concurrent replies; saving them makes the project a chat project."""
    project = lead_project(request, project_id)
    chat = ChatSettings.objects.filter(project=project).first()
    form = SettingsForm(request.POST or None, project=project, instance=chat)
    if request.method == "POST" and form.is_valid():
        try:
            services.save_settings(project=project, **form.cleaned_data)
        except ValidationError as invalid:
            for field, problems in invalid.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(request, "Chat settings saved.")
            return redirect("chat:settings", project.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "chat/settings.html", {"project": project, "form": form}, status=status)


@membership_required
def tree_export(request, project_id: int):
    """Every conversation's tree as OpenAssistant-like JSONL, streamed."""
    project = lead_project(request, project_id)
    response = StreamingHttpResponse(exports.tree_lines(project), content_type="application/jsonl")
    response["Content-Disposition"] = f'attachment; filename="chat-trees-{project.pk}.jsonl"'
    return response
