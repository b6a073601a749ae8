# One image for every infermon component; the command picks the component
# (docker-compose.yml runs each of them from it).
FROM python:3.11-slim
# Optional extras, e.g. --build-arg EXTRAS=sklearn for the isolation-forest outlier detector;
# none by default: every component runs without scikit-learn.
ARG EXTRAS=""
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY infermon ./infermon
COPY logger ./logger
COPY trigger ./trigger
COPY monitor ./monitor
COPY dashboards ./dashboards
# gcc only while installing: it compiles the monitor's one-pass path (setup.py), then goes.
# The checks run with -I (in /app the source folder would hide the installed package): the
# compiled module, and the package data the dashboard page and `infermon drift --html` serve.
# Not pinned (DL3008): the base image's Debian release fixes these versions, and a pinned one
# disappears from the mirror at that release's next point update. DL3013 takes ".[EXTRAS]"
# for a package from an index: it is this checkout, its dependencies pyproject.toml's ranges.
# hadolint ignore=DL3008,DL3013
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && python -I -c "import monitor._one_pass" \
    && python -I -c "from importlib.resources import files as f; \
assert all(f(p).joinpath(n).is_file() for p, n in [('infermon.html', 'report.html'), \
('infermon.html', 'vendor/chart.umd.min.js'), ('dashboards.page', 'index.html'), \
('dashboards.page', 'static/app.js')]), 'package data missing'" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/infermon && chown 65534:65534 /var/lib/infermon
# Spools and the default SQLite store go to the data directory, owned by the user that runs;
# a named volume mounted there starts with that owner. Output unbuffered: `docker logs` shows
# each line when it is written.
ENV INFERMON_DATA_DIR=/var/lib/infermon \
    PYTHONUNBUFFERED=1
USER 65534
WORKDIR /var/lib/infermon
# The defaults: logger 9081 (admin 9091), ingest 8082 (9093), monitor 9094, trigger 9095,
# dashboard 8000.
EXPOSE 9081 9091 8082 9093 9094 9095 8000
ENTRYPOINT ["infermon"]
