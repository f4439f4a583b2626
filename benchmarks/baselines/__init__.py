"""Baseline servers for the same river model: Seldon's stock wrapper and an MLServer runtime."""
