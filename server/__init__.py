"""nextbest server: the decision service, its store, trainer and Python client."""
