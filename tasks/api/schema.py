"""OpenAPI description of Chosen's authentication (loaded when the app is ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class OrganizationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tasks.api.authentication.OrganizationTokenAuthentication"
    name = "organizationToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organization API token."}


ERROR_LIST = {
    "type": "object",
    "description": "What was wrong, one entry per problem (tasks.api.errors).",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
                "required": ["field", "message", "code"],
            },
        }
    },
    "required": ["errors"],
}

# The answers every operation may give besides its own, all as an ErrorList.
ERROR_RESPONSES = {
    "400": "The request is not valid: each error names its field and says why.",
    "401": "No valid organization token or session.",
    "403": "Not allowed for this caller (role, two-factor set-up, CSRF for a session).",
    "404": "No such object in the caller's organization (another organization's object is "
    "a 404 as well), or no such page.",
    "429": "Too many requests: try again after the seconds in Retry-After.",
}
BODY_ERRORS = {
    "413": "The upload is larger than CHOSEN_IMPORT_MAX_BYTES.",
    "415": "The body is not in a media type this operation reads.",
}


def document_errors(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation documents the error answers
    it can give (DRF does not declare them), so that clients and the API fuzzing in the
    suite know every status the API may send."""
    result.setdefault("components", {}).setdefault("schemas", {})["ErrorList"] = ERROR_LIST
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorList"}}}
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = {**ERROR_RESPONSES, **(BODY_ERRORS if "requestBody" in operation else {})}
            for status, description in errors.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": content}
                )
    return result
