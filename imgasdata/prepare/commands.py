"""Command-line subcommands of this chapter, added to the ``imgasdata`` parser by :mod:`imgasdata.cli`."""

from __future__ import annotations


def add_commands(sub):
    """Add this chapter's subcommands to ``sub`` (an argparse subparsers object)."""
