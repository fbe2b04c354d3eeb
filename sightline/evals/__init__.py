"""`sightline eval <what>` subcommands, one module each with a ``register(subparsers)``."""
