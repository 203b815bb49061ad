"""The event-sourcing core shared by all four services (envelope, store, outbox relay, inbox)."""
