"""The ``aki`` command line. Each module here adds its subcommands through ``register(app)``."""
