"""HTTP/JSON access to nextbest: its own JSON API (jsonapi), the Personalizer-compatible API (personalizer) and
the server that runs them (app), over the same servicers, API keys, limits and metrics as gRPC."""
