"""Who the synthetic providers are: states, regions, specialties and fraud schemes.

The tables set how sites differ. Regions differ in cost level (through their states), in
beneficiary age and health, in how often providers admit patients, in fraud rate and above all
in which fraud schemes their fraudulent providers run: organised fraud clusters geographically,
so a site made of a few neighbouring states sees mostly one or two schemes. Specialties differ in
billing pattern and fraud rate. All figures are plausible round values, not estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REGIONS",
    "SCHEMES",
    "SPECIALTIES",
    "STATES",
    "RegionProfile",
    "SpecialtyProfile",
    "StateProfile",
]

# How a fraudulent provider's claims differ from an honest one's:
# upcoding: dearer claims with more diagnoses; phantom_billing: more claims per beneficiary;
# inpatient_padding: more and longer admissions; deceased_billing: claims for beneficiaries who
# died; referral_ring: many attending physicians for the number of claims.
SCHEMES = ("upcoding", "phantom_billing", "inpatient_padding", "deceased_billing",
           "referral_ring")


@dataclass(frozen=True)
class StateProfile:
    """A state: its region, its share of providers and its cost level relative to the mean."""

    code: str
    region: str
    weight: float
    cost_index: float


@dataclass(frozen=True)
class RegionProfile:
    """A region's fraud rate, its mix of fraud schemes and its beneficiaries' age and health."""

    fraud_rate: float
    scheme_mix: tuple[float, ...]  # probabilities over SCHEMES, in order
    age_mean: float
    chronic_mean: float
    inpatient_factor: float


@dataclass(frozen=True)
class SpecialtyProfile:
    """A specialty's share of providers, billing pattern and fraud rate relative to the mean."""

    weight: float
    claims_per_beneficiary: float
    cost_factor: float
    inpatient_share: float
    diagnoses_per_claim: float
    fraud_factor: float


# States in region order, so that consecutive states share a region.
STATES: tuple[StateProfile, ...] = (
    StateProfile("CT", "northeast", 2.0, 1.15), StateProfile("MA", "northeast", 3.5, 1.20),
    StateProfile("NY", "northeast", 9.0, 1.25), StateProfile("NJ", "northeast", 4.5, 1.18),
    StateProfile("PA", "northeast", 6.5, 1.02),
    StateProfile("OH", "midwest", 6.0, 0.92), StateProfile("MI", "midwest", 5.0, 0.95),
    StateProfile("IL", "midwest", 6.0, 1.00), StateProfile("IN", "midwest", 3.5, 0.88),
    StateProfile("WI", "midwest", 3.0, 0.93),
    StateProfile("FL", "southeast", 11.0, 1.00), StateProfile("GA", "southeast", 5.0, 0.90),
    StateProfile("NC", "southeast", 5.0, 0.88), StateProfile("SC", "southeast", 2.5, 0.86),
    StateProfile("TX", "south_central", 11.0, 0.95), StateProfile("LA", "south_central", 2.5, 0.90),
    StateProfile("AL", "south_central", 2.5, 0.84), StateProfile("TN", "south_central", 3.5, 0.86),
    StateProfile("AZ", "mountain", 3.5, 0.97), StateProfile("CO", "mountain", 3.0, 1.03),
    StateProfile("UT", "mountain", 1.5, 0.94), StateProfile("NV", "mountain", 1.5, 1.00),
    StateProfile("CA", "pacific", 14.0, 1.22), StateProfile("WA", "pacific", 4.0, 1.10),
    StateProfile("OR", "pacific", 2.5, 1.05),
)

#                                    upcode phantom inpat  dead   ring
REGIONS: dict[str, RegionProfile] = {
    "northeast": RegionProfile(0.080, (0.70, 0.05, 0.05, 0.05, 0.15), 74.5, 0.58, 1.10),
    "midwest": RegionProfile(0.070, (0.05, 0.05, 0.80, 0.05, 0.05), 73.5, 0.62, 1.20),
    "southeast": RegionProfile(0.120, (0.05, 0.75, 0.05, 0.10, 0.05), 75.5, 0.55, 0.95),
    "south_central": RegionProfile(0.130, (0.05, 0.25, 0.05, 0.60, 0.05), 72.5, 0.60, 1.00),
    "mountain": RegionProfile(0.065, (0.10, 0.05, 0.10, 0.05, 0.70), 72.0, 0.48, 0.90),
    "pacific": RegionProfile(0.090, (0.35, 0.10, 0.05, 0.05, 0.45), 73.0, 0.50, 0.85),
}

SPECIALTIES: dict[str, SpecialtyProfile] = {
    "internal_medicine": SpecialtyProfile(0.30, 2.2, 1.00, 0.08, 4.0, 1.0),
    "family_practice": SpecialtyProfile(0.22, 2.0, 0.85, 0.05, 3.5, 0.9),
    "cardiology": SpecialtyProfile(0.12, 2.6, 1.45, 0.14, 4.8, 1.2),
    "orthopedic_surgery": SpecialtyProfile(0.10, 1.8, 1.60, 0.18, 3.2, 1.1),
    "nephrology": SpecialtyProfile(0.08, 3.2, 1.30, 0.12, 5.2, 1.4),
    "oncology": SpecialtyProfile(0.08, 3.0, 1.90, 0.10, 5.0, 0.8),
    "psychiatry": SpecialtyProfile(0.10, 2.8, 0.70, 0.06, 2.5, 1.3),
}
