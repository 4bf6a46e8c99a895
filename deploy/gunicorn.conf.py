"""gunicorn settings of every socorg web process in a container (the image keeps this file at /app).

The command names the service and its address (`gunicorn -c /app/gunicorn.conf.py --bind 0.0.0.0:8001
'services.registry.app:create_app()'`); everything else comes from the socorg settings, so the same
environment variables drive `socorg up` and the containers.

The settings are read and checked here, in the gunicorn master, before any worker is forked: a
production deployment with a missing setting or the default JWT secret stops at once with one line
naming the problem, instead of forking workers that each fail to boot.
"""

from shared.infra import WEB_KEEPALIVE_SECONDS
from shared.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    # SystemExit passes through gunicorn's config loader, which would otherwise print a traceback.
    raise SystemExit(f"socorg: {exc}") from None

# Threads, not processes, carry the concurrency: requests mostly wait on MongoDB. gunicorn's gthread worker,
# answering the requests gunicorn cannot parse with problem+json (shared/gunicorn_worker.py).
worker_class = "shared.gunicorn_worker.ThreadWorker"
workers = _settings.web_workers
threads = _settings.web_threads

# Kubernetes sends SIGTERM after removing the pod from the Service; in-flight requests get this long.
graceful_timeout = 20
timeout = 30
keepalive = WEB_KEEPALIVE_SECONDS  # longer than the ingress keeps idle upstream connections

# The root filesystem is read-only in Kubernetes; worker heartbeats go to memory.
worker_tmp_dir = "/dev/shm"
# gunicorn >= 25.1 opens a control socket under $HOME, which the unprivileged user has not got;
# containers are managed by the orchestrator, not by gunicornc. (Older gunicorns ignore the name.)
control_socket_disable = True

# The application writes its own JSON access log with request ids (shared/web.py); gunicorn's would
# only repeat it.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
