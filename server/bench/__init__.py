"""`nextbest bench`: a load generator measuring a nextbest server against a bare gRPC echo service in one run."""
