# syntax=docker/dockerfile:1
#
# One image for every socorg process; the command picks which one runs:
#   web:    gunicorn -c /app/gunicorn.conf.py --bind 0.0.0.0:8001 'services.registry.app:create_app()'
#   worker: socorg worker registry      (outbox relay, event consumer, periodic jobs)
# deploy/compose.yaml and deploy/k8s/ run it that way. Build from the repository root:
#   docker build -t socorg:0.1.0 .

# ---- build: a virtual environment with the project and its dependencies ---------------------------
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/socorg
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
# Every one of them ships binary wheels for this platform: no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/socorg/bin/pip install --requirement requirements.txt

COPY shared/ shared/
COPY services/ services/
RUN /opt/socorg/bin/pip install --no-deps . \
    && /opt/socorg/bin/python -m compileall -q /opt/socorg/lib

# ---- runtime: the same base, the virtual environment, an unprivileged user ------------------------
FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="socorg" \
      org.opencontainers.image.description="Social-organization registry, brand-project award and development fund services"

RUN groupadd --system --gid 10001 socorg \
    && useradd --system --uid 10001 --gid socorg --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin socorg

COPY --from=build /opt/socorg /opt/socorg
WORKDIR /app
COPY deploy/gunicorn.conf.py /app/gunicorn.conf.py

# SOCORG_ENV=production turns on the settings guard: no process starts without MONGODB_URI,
# KAFKA_BOOTSTRAP_SERVERS and a real SOCORG_JWT_SECRET.
ENV PATH="/opt/socorg/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOCORG_ENV=production

USER 10001:10001
EXPOSE 8001 8002 8003

# No default service: a container must say which process it is (see the top of this file).
CMD ["socorg", "--help"]
