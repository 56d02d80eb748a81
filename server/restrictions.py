"""What a policy spec may reach outside itself, set once per process from the server's configuration.

Every process that creates policies from specs it did not write itself (`nextbest serve`'s parent and workers,
`nextbest train`, the process of an Evaluate call) applies the same `Restrictions` before it creates any:
`python:` specs only from the allowed modules, `rules:` journey files only from `rules_dir` (none without it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Restrictions:
    """The modules `python:` specs may name, and the one directory `rules:` specs may read (None: none)."""

    policy_modules: tuple[str, ...] = ()
    rules_dir: str | None = None

    def apply(self) -> None:
        """Make these the restrictions of this process (ValueError for a module name that is none)."""
        from nextbest import policies
        from nextbest.policies.rules import restrict_rules_files

        policies.allow_python_modules(self.policy_modules)
        restrict_rules_files(self.rules_dir)
