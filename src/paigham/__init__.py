"""Paigham: a sovereign, self-hosted, end-to-end encrypted Matrix homeserver."""

__version__ = "0.1.0"
