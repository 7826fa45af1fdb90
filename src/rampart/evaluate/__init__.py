"""Evaluation beyond single attacks: reports, the audit history and (soon) the audit runner."""
