"""The production deployment files: compose.yaml validated by docker-compose itself, nginx.conf by
`nginx -t`, and the Dockerfile / pre-commit config by their structure.

These tests need the `docker-compose` and `nginx` binaries (scripts/install-system-deps.sh installs
them); a missing binary is a failure, never a skip. No Django, no database, no Docker daemon.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import ItemsView, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "docker" / "nginx.conf"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
INSTALL_HINT = "run `sudo scripts/install-system-deps.sh` (installs docker-compose and nginx)"

# SPEC §3 processes in the production layout (the simulator is demo-only), plus the one-shot job.
APP_PROCESSES = ("web", "ws", "worker", "batch", "beat", "ingest", "flower", "autoscaler")
APP_SERVICES = (*APP_PROCESSES, "migrate")
BACKING_SERVICES = ("postgres", "redis", "nginx")

REQUIRED_ENV = {
    "DJANGO_SECRET_KEY": "test-secret-key-0123456789abcdef",
    "DJANGO_ALLOWED_HOSTS": "signal.example.com",
    "POSTGRES_PASSWORD": "pgsecret",
    "FLOWER_BASIC_AUTH": "ops:flowersecret",
}


# --------------------------------------------------------------------------------------------
# docker-compose
# --------------------------------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker-compose` (v1, Debian) or the `docker compose` v2 plugin, whichever exists."""
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    pytest.fail(f"neither docker-compose nor the docker compose plugin is installed: {INSTALL_HINT}")


def run_compose_config(
    tmp_path: Path, env_overrides: dict[str, str | None]
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV and not k.startswith("COMPOSE_")}
    env.update(REQUIRED_ENV)
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    # An empty env file: a developer's .env must not change what is tested.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [
            *compose_command(),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(COMPOSE_FILE),
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = run_compose_config(tmp_path_factory.mktemp("compose"), {})
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_every_process_and_backing_service_is_a_service(services: dict[str, Any]) -> None:
    assert set(services) == {*APP_SERVICES, *BACKING_SERVICES}


def test_app_services_share_one_image_and_build(services: dict[str, Any]) -> None:
    images = {name: services[name]["image"] for name in APP_SERVICES}
    builds = {name: services[name]["build"] for name in APP_SERVICES}
    assert set(images.values()) == {"signal-service:latest"}
    assert all(build == builds["web"] for build in builds.values()), builds
    assert builds["web"]["dockerfile"] == "docker/Dockerfile"
    assert builds["web"]["target"] == "app"
    assert Path(builds["web"]["context"]) == ROOT


def test_nginx_is_built_from_the_same_dockerfile(services: dict[str, Any]) -> None:
    build = services["nginx"]["build"]
    assert (build["dockerfile"], build["target"]) == ("docker/Dockerfile", "nginx")


@pytest.mark.parametrize(
    ("service", "command"),
    [
        ("web", "scripts/start-web.sh"),
        (
            "ws",
            "uvicorn signalsvc.asgi:application --host 0.0.0.0 --port 8003 --loop uvloop --http httptools "
            "--ws websockets-sansio --lifespan off --ws-ping-interval 60 --ws-per-message-deflate false "
            "--ws-max-size 65536 --proxy-headers --forwarded-allow-ips * --no-access-log",
        ),
        (
            "worker",
            "celery -A signalsvc worker -l info --farm -Q default --pool solo --prefetch-multiplier 1",
        ),
        (
            "batch",
            "celery -A signalsvc worker -l info -Q ingest,timeframes --pool solo --prefetch-multiplier 1",
        ),
        (
            "beat",
            "celery -A signalsvc beat -l info --scheduler django_celery_beat.schedulers:DatabaseScheduler",
        ),
        ("ingest", "python manage.py ingest_market_data"),
        ("flower", "python -m signalsvc.ops.flower --port=5555 --max_tasks=10000"),
        ("autoscaler", "python manage.py autoscale_workers"),
        ("migrate", "sh -c python manage.py migrate --noinput && python manage.py ensure_partitions"),
    ],
)
def test_service_command(services: dict[str, Any], service: str, command: str) -> None:
    assert " ".join(services[service]["command"]) == command


@pytest.mark.parametrize(("service", "replicas"), [("web", 2), ("ws", 2), ("worker", 2)])
def test_replicas(services: dict[str, Any], service: str, replicas: int) -> None:
    assert services[service]["deploy"]["replicas"] == replicas


@pytest.mark.parametrize("service", APP_PROCESSES)
def test_processes_wait_for_migrate_and_healthy_backends(services: dict[str, Any], service: str) -> None:
    assert services[service]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_migrate_is_a_one_shot_job_after_postgres(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_nginx_waits_for_healthy_web_and_ws_and_publishes_port_80(services: dict[str, Any]) -> None:
    nginx = services["nginx"]
    assert nginx["depends_on"] == {
        "web": {"condition": "service_healthy"},
        "ws": {"condition": "service_healthy"},
    }
    published = [str(p.get("published", "")) if isinstance(p, dict) else str(p) for p in nginx["ports"]]
    assert any(p in ("80", "80:80") for p in published), published


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_environment(services: dict[str, Any], service: str) -> None:
    env = services[service]["environment"]
    assert env["DJANGO_ENV"] == "production"
    assert env["DJANGO_SECRET_KEY"] == REQUIRED_ENV["DJANGO_SECRET_KEY"]
    assert env["DJANGO_ALLOWED_HOSTS"] == "signal.example.com,localhost"
    assert env["DATABASE_URL"] == "postgres://signal:pgsecret@postgres:5432/signal"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["API_ANONYMOUS_READ"] == "false"


def test_postgres_uses_the_same_password(services: dict[str, Any]) -> None:
    env = services["postgres"]["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"], env["POSTGRES_PASSWORD"]) == (
        "signal",
        "signal",
        "pgsecret",
    )


def test_flower_requires_basic_auth_and_binds_to_loopback(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "ops:flowersecret"
    port = flower["ports"][0]
    host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
    assert host_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("web", "/api/v2/health/ready"),
        ("postgres", "pg_isready"),
        ("redis", "redis-cli"),
        ("nginx", "/nginx-health"),
        ("worker", "inspect ping"),
    ],
)
def test_healthchecks(services: dict[str, Any], service: str, probe: str) -> None:
    test = services[service]["healthcheck"]["test"]
    assert probe in " ".join(test)


def test_images_of_backing_services(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert {"target": "/var/lib/postgresql/data", "source": "postgres-data"}.items() <= _volume(
        services["postgres"]
    )
    assert "--appendonly" in services["redis"]["command"]


def _volume(service: dict[str, Any]) -> ItemsView[str, Any]:
    volume = service["volumes"][0]
    if isinstance(volume, str):
        source, target = volume.split(":")[:2]
        return {"source": source, "target": target}.items()
    return volume.items()


@pytest.mark.parametrize("service", APP_SERVICES)
def test_graceful_stop(services: dict[str, Any], service: str) -> None:
    assert services[service]["stop_signal"] == "SIGTERM"
    assert services[service]["init"] is True


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_workers_get_time_to_finish_their_tasks(services: dict[str, Any]) -> None:
    assert _seconds(services["worker"]["stop_grace_period"]) >= 60
    assert _seconds(services["ingest"]["stop_grace_period"]) >= 30


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_missing_production_secret_stops_compose(tmp_path: Path, missing: str) -> None:
    result = run_compose_config(tmp_path, {missing: None})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail(f"nginx is not installed: {INSTALL_HINT}")
    return found


def nginx_conf_for_check(tmp_path: Path) -> Path:
    """docker/nginx.conf with `web` and `ws` (resolvable only inside compose) replaced by
    127.0.0.1, and its /tmp paths moved into tmp_path. Nothing else changes."""
    text = NGINX_CONF.read_text()
    substituted, count = re.subn(r"(\bserver\s+)(web|ws):8003\b", r"\g<1>127.0.0.1:8003", text)
    assert count == 2, "expected one `server web:8003` and one `server ws:8003` line in the upstreams"
    substituted = substituted.replace("/tmp/", f"{tmp_path}/")
    conf = tmp_path / "nginx.conf"
    conf.write_text(substituted)
    return conf


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = nginx_conf_for_check(tmp_path)
    result = subprocess.run(
        [nginx_binary(), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"nginx -t failed:\n{result.stderr}"


def test_the_local_rendering_routes_alike_and_passes_nginx_check(tmp_path: Path) -> None:
    """`make run`'s nginx (scripts/nginx_local.py): compose's file with local ports and paths."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nginx_local", ROOT / "scripts" / "nginx_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    text = module.render(
        NGINX_CONF.read_text(),
        port=18003,
        web_port=18004,
        ws_port=18005,
        run_dir=tmp_path,
        static_root=tmp_path / "static",
        access_log=False,
        nofile=4096,
    )
    conf = tmp_path / "local.conf"
    conf.write_text(text)
    result = subprocess.run(
        [nginx_binary(), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"nginx -t failed:\n{result.stderr}"
    http = parse_nginx(text).one("http")
    server = http.one("server")
    assert server.values("listen") == [["18003", "default_server"]]
    assert http.one("upstream", "signal_web").values("server")[0][0] == "127.0.0.1:18004"
    assert http.one("upstream", "signal_ws").values("server")[0][0] == "127.0.0.1:18005"
    # Same routes as production, except that /metrics reaches the REST process (README's curl).
    assert server.one("location", "/api/v2/signals/subscriptions/websocket").values("proxy_pass") == [
        ["http://signal_ws"]
    ]
    assert [d.args for d in server.find("location")].count(["=", "/metrics"]) == 0
    # Its own pid and temp files: make run and the end-to-end test never share them.
    assert f"pid {tmp_path}/nginx.pid;" in text
    assert http.values("proxy_temp_path") == [[f"{tmp_path}/nginx-proxy"]]


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    children: list[Directive] = field(default_factory=list)

    def find(self, name: str) -> list[Directive]:
        return [d for d in (self.block or []) if d.name == name]

    def one(self, name: str, *args: str) -> Directive:
        matches = [d for d in self.find(name) if list(d.args[: len(args)]) == list(args)]
        assert len(matches) == 1, (
            f"expected one `{name} {' '.join(args)}` in `{self.name}`, found {len(matches)}"
        )
        return matches[0]

    def values(self, name: str) -> list[list[str]]:
        return [d.args for d in self.find(name)]


def _tokens(text: str) -> Iterator[str]:
    pattern = re.compile(r"""\s+|#[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[{};]|[^\s{};'"#]+""")
    for match in pattern.finditer(text):
        token = match.group(0)
        if token.isspace() or token.startswith("#"):
            continue
        if token[0] in "'\"":
            token = token[1:-1]
        yield token


def parse_nginx(text: str) -> Directive:
    root = Directive("main", [], [])
    stack = [root]
    words: list[str] = []
    for token in _tokens(text):
        if token == ";":
            stack[-1].block.append(Directive(words[0], words[1:]))  # type: ignore[union-attr]
            words = []
        elif token == "{":
            directive = Directive(words[0], words[1:], [])
            stack[-1].block.append(directive)  # type: ignore[union-attr]
            stack.append(directive)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced nginx.conf"
    return root


@pytest.fixture(scope="module")
def nginx_conf() -> Directive:
    return parse_nginx(NGINX_CONF.read_text())


@pytest.fixture(scope="module")
def http(nginx_conf: Directive) -> Directive:
    return nginx_conf.one("http")


def test_upstream_balances_by_least_connections(http: Directive) -> None:
    upstream = http.one("upstream", "signal_web")
    names = [d.name for d in upstream.block or []]
    assert "least_conn" in names
    # nginx requires the balancing method before keepalive.
    assert names.index("least_conn") < names.index("keepalive")
    assert [args[0] for args in upstream.values("server")] == ["web:8003"]
    websocket = http.one("upstream", "signal_ws")
    assert next(d.name for d in websocket.block or []) == "least_conn"
    assert [args[0] for args in websocket.values("server")] == ["ws:8003"]


def test_web_and_ws_are_behind_the_proxy(services: dict[str, Any]) -> None:
    assert services["web"]["environment"]["API_PROXY_COUNT"] == "1"
    assert services["web"]["environment"]["WEB_BIND"] == "0.0.0.0:8003"
    assert set(services["nginx"]["depends_on"]) == {"web", "ws"}
    assert services["ws"]["ulimits"]["nofile"]["soft"] >= 65535


def test_websocket_location_upgrades(http: Directive) -> None:
    location = http.one("server").one("location", "/api/v2/signals/subscriptions/websocket")
    assert location.values("proxy_pass") == [["http://signal_ws"]]
    assert location.values("proxy_http_version") == [["1.1"]]
    headers = dict(tuple(args) for args in location.values("proxy_set_header"))
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert _seconds(location.values("proxy_read_timeout")[0][0]) >= 300
    upgrade_map = http.one("map", "$http_upgrade", "$connection_upgrade")
    assert [d.name for d in upgrade_map.block or []] == ["default", ""]
    assert upgrade_map.block[0].args == ["upgrade"]  # type: ignore[index]


def test_default_location_proxies_with_forwarding_headers(http: Directive) -> None:
    location = http.one("server").one("location", "/")
    assert location.values("proxy_pass") == [["http://signal_web"]]
    headers = dict(tuple(args) for args in location.values("proxy_set_header"))
    assert headers["Host"] == "$host"
    assert headers["X-Real-IP"] == "$remote_addr"
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$forwarded_proto"
    assert headers["Connection"] == ""  # upstream keep-alive


def test_metrics_are_not_served_through_the_balancer(http: Directive) -> None:
    location = http.one("server").one("location", "=", "/metrics")
    assert location.values("return")[0][0] == "403"
    assert location.find("proxy_pass") == []


def test_body_limit_and_gzip_for_json(http: Directive) -> None:
    assert http.values("client_max_body_size") == [["12m"]]
    assert http.values("gzip") == [["on"]]
    assert "application/json" in http.values("gzip_types")[0]


def test_nginx_includes_only_files_the_image_ships(nginx_conf: Directive, http: Directive) -> None:
    assert nginx_conf.find("include") == []
    assert http.values("include") == [["/etc/nginx/mime.types"]]


# --------------------------------------------------------------------------------------------
# Dockerfile, .dockerignore, system deps script, pre-commit
# --------------------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions (continuation lines joined, comments dropped) per stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
            assert match is not None
            current = []
            stages[match.group(2) or f"final:{match.group(1)}"] = current
        current.append(line)
    return stages


def test_dockerfile_app_stage() -> None:
    app = dockerfile_stages()["app"]
    assert app[0].startswith("FROM python:3.11-slim")
    assert "COPY requirements/base.txt requirements/base.txt" in app
    assert any(i.startswith("RUN pip install") and "-r requirements/base.txt" in i for i in app)
    assert any("manage.py collectstatic --noinput" in i for i in app)
    users = [i.split()[1] for i in app if i.startswith("USER ")]
    assert users == ["signal"]
    assert app.index(next(i for i in app if "collectstatic" in i)) < app.index("USER signal")
    cmd = next(i for i in app if i.startswith("CMD "))
    assert cmd == 'CMD ["scripts/start-web.sh"]'
    assert "ENV WEB_BIND=0.0.0.0:8003" in app
    # The live page's charting library comes from the node stage, before collectstatic.
    assert app.index(next(i for i in app if i.startswith("COPY --from=web-assets"))) < app.index(
        next(i for i in app if "collectstatic" in i)
    )


def test_dockerfile_default_target_is_the_app() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "final:app"
    assert stages["nginx"][0].startswith("FROM nginx:")
    assert "COPY docker/nginx.conf /etc/nginx/nginx.conf" in stages["nginx"]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".venv-bench", ".env", "staticfiles"} <= ignored
    assert "docker" not in ignored and "requirements" not in ignored


def test_install_script_is_quiet_when_everything_is_present() -> None:
    compose_command()
    nginx_binary()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-system-deps.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_pre_commit_hooks_run_offline_with_the_venv_ruff() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert {repo["repo"] for repo in config["repos"]} == {"local"}
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format"} <= set(hooks)
    for hook_id in ("ruff", "ruff-format"):
        assert hooks[hook_id]["language"] == "system"
        assert hooks[hook_id]["entry"].startswith(".venv/bin/ruff ")
