"""Subcommands of `nextbest`: one module each, with `add(subparsers)` registering its parser.

A command's parser sets `run=` to a function of the parsed arguments that
returns the exit code. Heavy imports happen inside `run`, so `--help` is fast.
"""

from nextbest.server.commands import bench, demo, evaluate, export, serve, train

COMMANDS = [serve, train, bench, evaluate, export, demo]
