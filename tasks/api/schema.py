"""OpenAPI description of Chosen's authentication (loaded when the app is ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class OrganizationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tasks.api.authentication.OrganizationTokenAuthentication"
    name = "organizationToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organization API token."}
