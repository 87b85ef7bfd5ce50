"""One module per subcommand; each defines ``register(subparsers)``.

``register`` adds its parser with ``subparsers.add_parser(...)`` and sets
``func=run`` through ``set_defaults``; ``run(args)`` returns an exit code (or None
for 0). Modules here are discovered automatically.
"""
