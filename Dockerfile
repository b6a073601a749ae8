# One image for every infermon component; the command picks the component.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY infermon ./infermon
COPY logger ./logger
COPY trigger ./trigger
COPY monitor ./monitor
COPY dashboards ./dashboards
# gcc only while installing: it compiles the monitor's one-pass path (setup.py), then goes.
# The check runs with -I: in /app the source folder would hide the installed package.
# Not pinned (DL3008): the base image's Debian release fixes these versions, and a pinned one
# disappears from the mirror at that release's next point update.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && python -I -c "import monitor._one_pass" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/infermon && chown 65534:65534 /var/lib/infermon
# Spools and the default SQLite store go to the data directory, owned by the user that runs.
ENV INFERMON_DATA_DIR=/var/lib/infermon
USER 65534
WORKDIR /var/lib/infermon
ENTRYPOINT ["infermon"]
