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
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && python -c "import monitor._one_pass" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER 65534
WORKDIR /var/lib/infermon
ENTRYPOINT ["infermon"]
