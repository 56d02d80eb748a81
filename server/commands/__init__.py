"""The server's subcommands of `nextbest`: serve, train, bench, evaluate, export, demo (`nextbest.cli` lists
every command). One module each, with `add(subparsers)` registering its parser.

A command's parser sets `run=` to a function of the parsed arguments that
returns the exit code. Heavy imports happen inside `run`, so `--help` is fast.
"""
