"""The commands of ``hare``, one module each: ``HELP`` (the one line ``hare --help`` shows),
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status). ``hare.cli`` holds the table
of commands and the error handling; ``pipeline`` makes the commands of the steps (``hare run``,
``hare corpus``...) from the step registry. Adding a command is one module here and one line in
``hare.cli.COMMANDS`` (``docs/adding-a-command.md``)."""
