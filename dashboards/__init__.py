"""The dashboard API, web page and Grafana dashboards over what `monitor` stores."""
