"""nextbest over HTTP."""
