# syntax=docker/dockerfile:1
# relbank image: `docker build -t relbank .` (deploy/compose.yaml builds it for the local stack).
# Runs `relbank serve --role all` by default; pass other arguments to run another role or command,
# e.g. `docker run relbank migrate` or `docker run relbank serve --role consumer`.
#
# The image carries the production dependencies only: not the development group, and not the
# `embedded` extra (the embedded PostgreSQL and broker behind `relbank dev`). Both base images are
# pinned to an exact Python and Debian release; to pin by digest as well, resolve it once with
# `docker buildx imagetools inspect python:3.11.13-slim-bookworm` and append `@sha256:...`.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: resolve the locked dependencies and install the project into /opt/venv ------------
FROM ${PYTHON_IMAGE} AS build

# Same uv as the lock file was written with; it comes from PyPI like everything else.
RUN pip install --no-cache-dir uv==0.13.9

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src

# Dependencies first (the layer is reused while pyproject.toml and uv.lock do not change) ...
# --no-dev and no extras: neither the development tools nor the embedded stack.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# ... then the project itself, as a regular (non-editable) install: the wheel carries the package
# and, as the top-level package relbank_migrations, the migrations/ folder.
COPY README.md ./
COPY service ./service
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---- runtime: the virtual environment only, run by an unprivileged user -----------------------
FROM ${PYTHON_IMAGE}

RUN groupadd --system --gid 10001 relbank \
    && useradd --system --uid 10001 --gid relbank --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin relbank \
    && mkdir -p /app \
    && chown relbank:relbank /app

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELBANK_HOST=0.0.0.0 \
    RELBANK_PORT=8000

WORKDIR /app
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RELBANK_PORT', '8000') + '/healthz', timeout=3)"]

ENTRYPOINT ["relbank"]
CMD ["serve", "--role", "all"]
