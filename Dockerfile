# One image for every infermon component; the command picks the component.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY infermon ./infermon
COPY logger ./logger
COPY monitor ./monitor
COPY dashboards ./dashboards
RUN pip install --no-cache-dir .
USER 65534
WORKDIR /var/lib/infermon
ENTRYPOINT ["infermon"]
