"""Value types used by more than one service's contract."""

from __future__ import annotations

from enum import StrEnum


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"


class Benefit(StrEnum):
    PAID = "paid"  # a paid mutual-aid plan the member enrolled in
    CARD = "card"  # a free benefit of the Jing card


class InjurySeverity(StrEnum):
    INJURY = "injury"
    DISABILITY = "disability"
    DEATH = "death"
