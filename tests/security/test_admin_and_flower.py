"""The Django admin and Flower are behind authentication.

Admin: every page sends an anonymous or non-staff visitor to the login (in production over HTTPS
only, with secure cookies: tests/security/test_production_settings.py). Flower: the production
layouts require FLOWER_BASIC_AUTH, and a real Flower started with it refuses requests without it.
docker-compose's own rendering of compose.yaml is checked in tests/deploy/test_deploy_files.py
(::test_flower_requires_basic_auth_and_binds_to_loopback, ::test_missing_production_secret_stops_compose).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import free_port, stop_process_group, subprocess_env, wait_until_served

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/accounts/apikey/",
        "/admin/accounts/apikey/add/",
        "/admin/django_celery_beat/periodictask/",
    ],
)
def test_the_admin_sends_anonymous_visitors_to_its_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/login/?next={path}"


@pytest.mark.django_db
def test_a_user_who_is_not_staff_is_sent_to_the_login(client, django_user_model):
    user = django_user_model.objects.create_user("reader", password="reader-password-1234")
    client.force_login(user)
    response = client.get("/admin/")
    assert (response.status_code, response.headers["Location"]) == (302, "/admin/login/?next=/admin/")


@pytest.mark.django_db
def test_staff_get_in(admin_client):
    assert admin_client.get("/admin/accounts/apikey/").status_code == 200


def test_compose_requires_flower_basic_auth() -> None:
    """The file as written (PyYAML, no docker-compose): a required variable (`:?`), no default, and
    Flower's port bound to the host's loopback unless FLOWER_BIND says otherwise."""
    flower = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["${FLOWER_BIND:-127.0.0.1}:5555:5555"]
    assert not any("auth" in arg for arg in flower["command"])  # nothing on the command line overrides it


def test_kubernetes_flower_reads_basic_auth_from_the_secret_and_is_not_exposed() -> None:
    docs = list(yaml.safe_load_all((ROOT / "docker/k8s/flower.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "signal-secrets"}} in container["envFrom"]
    secret = yaml.safe_load((ROOT / "docker/k8s/secret.example.yaml").read_text())
    assert "FLOWER_BASIC_AUTH" in secret["stringData"]
    assert service["spec"]["type"] == "ClusterIP"


@pytest.fixture
def flower(tmp_path: Path) -> Any:
    """A real Flower started as compose starts it (FLOWER_BASIC_AUTH in its environment)."""
    port = free_port()
    log = open(tmp_path / "flower.log", "w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), "-m", "signalsvc.ops.flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=subprocess_env(FLOWER_BASIC_AUTH="ops:flower-secret-7d2e"), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_until_served(url, what="flower", status=None, process=process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + (tmp_path / "flower.log").read_text()) from None
        yield url
    finally:
        stop_process_group(process)
        log.close()


@pytest.mark.slow
def test_flower_refuses_requests_without_its_basic_auth(flower: str) -> None:
    anonymous = requests.get(flower, timeout=10)
    wrong = requests.get(flower, auth=("ops", "guess"), timeout=10)
    right = requests.get(flower, auth=("ops", "flower-secret-7d2e"), timeout=10)
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
