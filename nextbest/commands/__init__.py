"""The commands that call a running server over gRPC (`nextbest loops|policy|stats|model|apply`): they need the
client install only."""
