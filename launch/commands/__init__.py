"""Subcommands that read results folders or orchestrate several runs."""
