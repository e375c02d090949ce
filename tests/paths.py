"""Where the tests find the repository and the real photos and weights beside it (``../shared``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""

SHARED = ROOT.parent / "shared"
"""Real shop photos and ImageNet weights; CI has them, a checkout elsewhere may not (tests then skip)."""
