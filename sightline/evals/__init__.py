"""Offline evaluations, one module each, registered in sightline/commands/eval.py."""
