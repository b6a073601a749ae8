"""infermon: payload logging and model monitoring for KServe-style model serving."""

__version__ = "0.1.0"
