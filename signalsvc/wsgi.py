"""The WSGI application of the REST server (granian, or gunicorn: scripts/start-web.sh): Django's
handler behind the fast lane of the hottest reads (signalsvc/api/fastlane.py)."""

import ctypes
import os
import signal
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signalsvc.settings")


def _exit_with_master() -> None:
    """Ask Linux to SIGTERM this server worker when its master dies. A granian worker outlives a
    master killed with SIGKILL and goes on serving the port with nobody to stop or replace it; with
    this it finishes its request and leaves, and the restarted master starts fresh workers. Only in
    a server's worker (scripts/start-web.sh sets WEB_WORKER_EXIT_WITH_MASTER): PR_SET_PDEATHSIG
    follows the forking thread, which is the master's main thread there."""
    if sys.platform != "linux" or os.environ.get("WEB_WORKER_EXIT_WITH_MASTER") != "1":
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the master died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


_exit_with_master()
application = get_wsgi_application()

if settings.API_FAST_LANE:
    from signalsvc.api.fastlane import FastLane

    application = FastLane(application)
