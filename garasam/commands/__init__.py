"""One module per `garasam` command: `add_arguments(parser)` declares its flags, `run(args)` checks
them and drives the library below. No library module imports a command module."""
