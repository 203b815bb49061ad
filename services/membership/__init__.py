"""Membership service: unions, members, Jing cards, mutual-aid enrolments and injury reports.

Layout: ``domain`` (every rule, pure), ``handlers`` (commands: load -> decide -> save; reactions to
claims events), ``projections`` / ``views`` (read models and their queries), ``vault`` (personal and
health data, encrypted), ``tables`` (the schema), ``api`` (HTTP), ``app`` (wiring), ``settings``.
"""
