"""Outer loops that learn the meta-knowledge from task solutions."""
