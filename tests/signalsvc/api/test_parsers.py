"""JSON request bodies (signalsvc.api.parsers): what DRF's parser cannot parse is a 400."""

import pytest

pytestmark = pytest.mark.django_db

DEPTH = 100_000  # far beyond the interpreter's recursion limit, far below the body size limit


@pytest.mark.parametrize(
    "path", ["/api/v2/signals/batch/greeks", "/api/v2/signals/greeks/calculate", "/api/v2/market/bars"]
)
def test_json_nested_beyond_the_recursion_limit_is_400(api, make_api_key, path):
    """Found by tests/fuzz: the RecursionError of the JSON decoder escaped as a 500."""
    body = b"[" * DEPTH + b"]" * DEPTH

    response = api.generic("POST", path, body, content_type="application/json", HTTP_X_API_KEY=make_api_key())

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "malformed_request",
            "message": "JSON parse error - nested too deeply",
            "details": {},
        }
    }


def test_json_nested_within_the_limit_is_parsed_and_judged_by_the_view(api):
    body = b'{"instrument_keys": ' + b"[" * 50 + b"]" * 50 + b"}"

    response = api.generic("POST", "/api/v2/signals/batch/greeks", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_input",
            "message": 'body must be {"instrument_keys": [key, ...]}',
            "details": {},
        }
    }
