"""Evaluation of the whole route on a gold set: metrics, the ladder, reports, export."""
