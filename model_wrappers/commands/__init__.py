"""Subcommands of ``seldon-river`` that act on one component."""
