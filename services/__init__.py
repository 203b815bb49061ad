"""The services that exist: membership and claims; each runs as its own process
(`python -m services.<name>`). A new service copies their shape (docs/CONVENTIONS.md)."""
