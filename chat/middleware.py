"""The short way of a turn's events poll (see ``chat.streaming``, "the page's short way"):
a poll with the page's key is answered from the turn's Redis stream while a worker writes
it, before the session, the user, the organization or the database are read; any other
poll goes on to ``chat.views.events``.

It comes right after Django's SecurityMiddleware (its HTTPS redirect and headers apply), so
that nothing else runs for these polls."""

import re

from django.conf import settings
from django.http import JsonResponse

from chat import streaming
from chat.models import ChatTurn

# chat/urls.py's "events" (matched here before URL resolving runs; the tests poll the
# reversed URL, so the two cannot drift apart unnoticed).
EVENTS_PATH = re.compile(r"^/projects/(\d+)/chat/turns/(\d+)/events/$")


def events_answer(found: list[dict], status: str, finished: bool, message: str = ""):
    """The poll's answer, the same by either way: the events after the cursor and the turn's
    state."""
    response = JsonResponse(
        {"events": found, "status": status, "finished": finished, "message": message}
    )
    response["Cache-Control"] = "no-store"
    # As CommonMiddleware would (the short way skips it): without it gunicorn sends chunks.
    response["Content-Length"] = str(len(response.content))
    return response


def live_answer(request, project_id: int, turn_id: int):
    """The answer from the stream alone, or None for the whole way."""
    request.get_host()  # ALLOWED_HOSTS holds here too (DisallowedHost is a 400)
    key = request.GET.get("key", "")
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key or not streaming.events_key_valid(key, project_id, turn_id, session_key):
        return None
    live = streaming.read_live(turn_id, streaming.cursor(request.GET.get("after")))
    if live is None:
        return None
    found = live.events
    end = next((event for event in found if event["kind"] == "end"), None)
    if end is None:
        status = ChatTurn.Status.QUEUED if live.queued else ChatTurn.Status.RUNNING
        return events_answer(found, status, False)
    failed = end["status"] != ChatTurn.Status.SUCCEEDED
    return events_answer(found, end["status"], True, end.get("message", "") if failed else "")


class TurnEventsShortcut:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "GET":
            match = EVENTS_PATH.match(request.path_info)
            if match:
                answer = live_answer(request, int(match[1]), int(match[2]))
                if answer is not None:
                    return answer
        return self.get_response(request)
