# One image for every process of the service; the command picks the role.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY outbox ./outbox
COPY api ./api
COPY relay ./relay
COPY consumers ./consumers
COPY ops ./ops
COPY console ./console
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 qa
USER qa
EXPOSE 8000 8081 9101 9102 9103
CMD ["qa-api"]
