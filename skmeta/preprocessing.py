"""Preprocessing that learns across tasks."""

from ._scaler import TaskScaler

__all__ = ["TaskScaler"]
