"""Render docker/nginx.conf (compose's) for the local topology and print the rendered file's path.

The same routing as production, with local addresses: the public port is WEB_PORT, the upstreams
are the REST server (granian) on WEB_HTTP_PORT and the ASGI server on WS_PORT (scripts/ports.sh), static files come
from collectstatic's folder, and pid and temp files live under .run/nginx-<port>/ so that several
local topologies (make run, the end-to-end test) never share them. Locally /metrics is served
(README's curl); in production it is scraped per replica and refused at the balancer. The access
log is off unless NGINX_ACCESS_LOG=1: at thousands of requests a second it would cost more than
the requests.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docker" / "nginx.conf"


def render(
    text: str,
    *,
    port: int,
    web_port: int,
    ws_port: int,
    run_dir: Path,
    static_root: Path,
    access_log: bool,
    nofile: int | None = None,
) -> str:
    replacements = [
        (r"listen 80 default_server;", f"listen {port} default_server;"),
        (r"server web:8003 ", f"server 127.0.0.1:{web_port} "),
        (r"server ws:8003 ", f"server 127.0.0.1:{ws_port} "),
        (r"/tmp/nginx", f"{run_dir}/nginx"),
        (r"alias /srv/static/;", f"alias {static_root}/;"),
    ]
    if nofile is not None:
        # nginx cannot raise its limit past the hard limit of the user running `make run`.
        replacements.append(("worker_rlimit_nofile 65535;", f"worker_rlimit_nofile {min(nofile, 65535)};"))
        replacements.append(("worker_connections 16384;", f"worker_connections {min(16384, nofile // 2)};"))
    for old, new in replacements:
        if old not in text:
            raise SystemExit(f"nginx_local: '{old}' is no longer in {SOURCE}; update this script")
        text = text.replace(old, new)
    # The production /metrics refusal (its comment, and the block up to its closing line) is dropped.
    text, dropped = re.subn(
        r"\n([ \t]*)# Prometheus scrapes[^\n]*\n(?:[ \t]*#[^\n]*\n)*[ \t]*location = /metrics \{.*?\n\1\}\n",
        "\n",
        text,
        flags=re.DOTALL,
    )
    if dropped != 1:
        raise SystemExit(f"nginx_local: the /metrics location of {SOURCE} changed; update this script")
    if not access_log:
        text = text.replace("access_log /dev/stdout signal;", "access_log off;")
    return text


def main() -> None:
    port = int(os.environ.get("WEB_PORT", "8003"))
    run_dir = ROOT / ".run" / f"nginx-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = render(
        SOURCE.read_text(),
        port=port,
        web_port=int(os.environ.get("WEB_HTTP_PORT", port + 1)),
        ws_port=int(os.environ.get("WS_PORT", port + 2)),
        run_dir=run_dir,
        static_root=ROOT / "staticfiles",
        access_log=os.environ.get("NGINX_ACCESS_LOG") == "1",
        nofile=int(os.environ["NGINX_NOFILE"]) if os.environ.get("NGINX_NOFILE", "").isdigit() else None,
    )
    target = run_dir / "nginx.conf"
    target.write_text(conf)
    sys.stdout.write(f"{target}\n")


if __name__ == "__main__":
    main()
