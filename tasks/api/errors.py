from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.views import exception_handler


def error_list_handler(exc, context):
    """DRF errors as ``{"errors": [{"field", "message", "code"}]}`` (field is null for
    errors that are not about one field), with the HTTP status unchanged."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    errors = []
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    _flatten(detail, None, errors)
    response.data = {"errors": errors}
    return response


def _flatten(detail, field, errors):
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key in ("detail", "non_field_errors") else key
            _flatten(value, f"{field}.{name}" if field and name else (name or field), errors)
    elif isinstance(detail, list):
        for value in detail:
            _flatten(value, field, errors)
    else:
        errors.append(
            {"field": field, "message": str(detail), "code": getattr(detail, "code", "error")}
        )


@csrf_exempt  # it changes nothing; a POST to a wrong address is a 404 like a GET
def not_found(request, *args, **kwargs):
    """/api/ addresses that match no route: a 404 in the API's own error shape (JSON), not
    the HTML page that the rest of the site shows."""
    error = {"field": None, "message": "No such API address.", "code": "not_found"}
    return JsonResponse({"errors": [error]}, status=404)
