"""How the OpenAPI schema describes API-key authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "signalsvc.accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key bound to a subscription and its tier (rate limit, WebSocket "
            "connections and subscriptions). Without one, reads are allowed when API_ANONYMOUS_READ "
            "is on (the local demo).",
        }
