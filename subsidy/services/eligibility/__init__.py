"""The eligibility service: applies the clause rules (subsidy.core.eligibility)
to every application on a faust-streaming agent, and answers PolicyService.
Skeleton: subsidy/services/__init__.py. See docs/eligibility.md."""
