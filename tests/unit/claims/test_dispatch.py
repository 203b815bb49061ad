"""Every event type the claims service meets is handled or explicitly ignored by each aggregate,
projection and reaction table."""

from __future__ import annotations

from services.claims import domain
from services.claims.handlers import coverage_reactions
from services.claims.projections import coverage_projectors, own_projectors
from shared.contracts import claims, membership

AGGREGATES = (domain.Claim, domain.ReportDecision)


def test_the_aggregates_account_for_every_event_type_the_service_raises() -> None:
    accounted = set().union(*(a.accounted_events() for a in AGGREGATES))
    assert sorted(t.event_type for t in claims.registry.types() if t not in accounted) == []


def test_the_read_models_handle_every_own_event_type() -> None:
    assert own_projectors.unaccounted(claims.registry) == []


def test_every_membership_event_type_has_a_reaction_and_a_place_in_coverage() -> None:
    assert coverage_reactions.unaccounted(membership.registry) == []
    assert coverage_projectors.unaccounted(membership.registry) == []


def test_a_membership_type_newer_than_this_release_still_has_a_named_handler() -> None:
    # It advances the member's stream version, so reports parked behind it are released.
    assert coverage_reactions.unregistered_handler is not None
