"""Mediation service: labour-dispute cases at the union service stations, their legal deadlines,
sessions in the mediation room, outcomes and escalation up the three tiers.

Layout: ``calendar`` and ``periods`` (the working-day calendar and legal periods, as data),
``domain`` (every rule, pure), ``schemas`` (request bodies = commands), ``handlers`` (use cases and
the reaction to membership events), ``projections`` / ``views`` (read models and every read),
``vault`` (encrypted personal data, texts and minutes), ``tables``, ``api``, ``app``, ``settings``.
"""
