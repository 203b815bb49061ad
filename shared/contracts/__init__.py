"""The event contract other systems are written against (docs/DESIGN.md §3).

Payload fields may be added; never removed or changed in meaning within a schema version.
A breaking change is a new ``schema_version`` with an upcaster registered beside it.
"""
