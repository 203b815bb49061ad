"""Every membership event type is handled or explicitly ignored by each aggregate, projection and
reaction table: a new type, or a handler marked for the wrong class, fails here."""

from __future__ import annotations

from services.membership import domain
from services.membership.handlers import claim_reactions
from services.membership.mediation_timeline import MEDIATION_REACTIONS, timeline
from services.membership.projections import claim_projectors, projectors
from shared.contracts import claims, mediation, membership

AGGREGATES = (domain.Union, domain.Member, domain.InjuryReport, domain.CataloguePlan)


def test_the_aggregates_account_for_every_event_type_the_service_raises() -> None:
    accounted = set().union(*(a.accounted_events() for a in AGGREGATES))
    assert sorted(t.event_type for t in membership.registry.types() if t not in accounted) == []


def test_each_aggregate_accounts_only_for_real_event_types() -> None:
    for aggregate in AGGREGATES:
        assert aggregate.accounted_events() <= set(membership.registry.types()), aggregate


def test_the_read_models_handle_every_own_event_type() -> None:
    assert projectors.unaccounted(membership.registry) == []


def test_every_claims_event_type_is_handled_or_ignored() -> None:
    assert claim_reactions.unaccounted(claims.registry) == []
    assert claim_projectors.unaccounted(claims.registry) == []


def test_every_mediation_event_type_is_handled_or_ignored() -> None:
    assert timeline.unaccounted(mediation.registry) == []
    # The consumer reacts to exactly the handled types; the rest are skipped (their versions count).
    assert set(MEDIATION_REACTIONS) == {t.event_type for t in timeline.handled()}
    assert "CaseReceived" in MEDIATION_REACTIONS and "MinutesRecorded" not in MEDIATION_REACTIONS
