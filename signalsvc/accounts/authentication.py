from rest_framework import authentication, exceptions

from signalsvc.accounts.selectors import api_key_for
from signalsvc.accounts.services import api_key_touch

HEADER = "HTTP_X_API_KEY"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``X-API-Key`` header. No header: anonymous (the permission decides). A wrong key: 401."""

    def authenticate(self, request):
        raw = request.META.get(HEADER)
        if not raw:
            return None
        key = api_key_for(raw_key=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("invalid, inactive or expired API key")
        api_key_touch(key=key)
        return (None, key)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing.
        return 'ApiKey header="X-API-Key"'
