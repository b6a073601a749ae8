"""Consuming payload events, storing them, and the statistics over them."""
