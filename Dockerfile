# pgjobs as an image: `docker compose run --rm migrate` creates or upgrades the schema.
# Built from this checkout with `pip install .`, so the image runs what the wheel ships
# (migrations included), not the source tree.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgjobs/ pgjobs/
COPY migrations/ migrations/
RUN pip install . && rm -rf /src/*

RUN useradd --system --create-home --home-dir /home/pgjobs pgjobs
# The example application, for the compose file's worker service.
COPY examples/ /home/pgjobs/examples/
USER pgjobs
WORKDIR /home/pgjobs

CMD ["python", "-m", "pgjobs", "--help"]
