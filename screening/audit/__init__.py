"""Audit: outcomes, the auditor's figures (reporting, stats, plots), CSV exports and pages.

The audit trail itself is written by every capability through ``screening.events``.
"""
