"""API keys are stored hashed and compared in constant time (SPEC §9; signalsvc/accounts/).

A key is `sk_<prefix>_<secret>`: only its public prefix and the SHA-256 digest of the whole key are
stored. Authentication finds the row by the prefix and compares digests with `hmac.compare_digest`.
The WebSocket uses the same selector (tests/streaming/test_limits.py::test_a_bad_key_is_refused).
"""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace

import pytest
from django.db import connection

from signalsvc.accounts import selectors
from signalsvc.accounts.models import ApiKey

pytestmark = pytest.mark.django_db
URL = "/api/v2/signals/indicators"  # any read that goes through authentication


def _with_secret(raw: str, secret: str) -> str:
    head, prefix, _ = raw.split("_", 2)
    return f"{head}_{prefix}_{secret}"


def test_the_raw_key_is_stored_nowhere_only_its_digest(make_api_key):
    raw = make_api_key()
    secret = raw.split("_", 2)[2]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table}")  # every column, as stored
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()

    assert len(rows) == 1
    row = dict(zip(columns, rows[0], strict=True))
    stored = " ".join(str(value) for value in row.values())
    assert raw not in stored
    assert secret not in stored and secret[:16] not in stored
    assert row["digest"] == hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.parametrize(
    "wrong",
    [
        lambda secret: secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # last character differs
        lambda secret: secret[:-1],  # one character short
        lambda secret: secret + "x",  # one character long
        lambda secret: "x" * len(secret),  # same length, all wrong
    ],
    ids=["last-char", "shorter", "longer", "all-wrong"],
)
def test_a_wrong_secret_under_a_real_prefix_is_refused(api, make_api_key, wrong):
    raw = make_api_key()
    forged = _with_secret(raw, wrong(raw.split("_", 2)[2]))

    response = api.get(URL, HTTP_X_API_KEY=forged)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200


def test_the_digests_are_compared_with_hmac_compare_digest(api, make_api_key, monkeypatch):
    raw = make_api_key()
    forged = _with_secret(raw, "forged-secret")
    calls: list[tuple[str, str]] = []

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(selectors, "hmac", SimpleNamespace(compare_digest=spy))

    assert api.get(URL, HTTP_X_API_KEY=forged).status_code == 401
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200
    stored = ApiKey.objects.get().digest
    assert calls == [
        (stored, hashlib.sha256(forged.encode()).hexdigest()),
        (stored, hashlib.sha256(raw.encode()).hexdigest()),
    ]


def test_wrong_secrets_for_a_known_prefix_cost_no_query(api, make_api_key, django_assert_num_queries):
    raw = make_api_key()
    assert api.get(URL, HTTP_X_API_KEY=raw).status_code == 200  # the prefix's row is now cached
    with django_assert_num_queries(0):
        for n in range(20):
            assert api.get(URL, HTTP_X_API_KEY=_with_secret(raw, f"guess{n}")).status_code == 401


@pytest.mark.parametrize(
    "malformed",
    [
        "not-a-key",
        "sk_",
        "sk_abcd1234_",
        "sk__secret",
        "pk_abcd1234_secret",
        "sk_abcd\x001234_secret",  # a NUL byte would make PostgreSQL refuse the query
        "sk_" + "a" * 17 + "_secret",  # longer than any stored prefix
        "sk_ab-cd_secret",
        "sk_äbcd_secret",
    ],
    ids=["no-shape", "bare", "no-secret", "no-prefix", "other-scheme", "nul", "long-prefix", "dash",
         "non-ascii"],
)  # fmt: skip
def test_malformed_keys_are_401_without_a_query(api, malformed, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api.get(URL, HTTP_X_API_KEY=malformed)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
