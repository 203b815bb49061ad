"""Benchmarks of the event-sourcing core (``python -m bench.core``)."""
