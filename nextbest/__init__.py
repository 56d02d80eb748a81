"""nextbest: a self-hosted decision service — contextual bandits behind gRPC, learning from every outcome.

The client needs only grpcio and protobuf (`pip install nextbest`)::

    from nextbest import Client, action

    with Client("127.0.0.1:50051") as nb:
        r = nb.rank([action("welcome-email", "email"), action("app-tip", "push")], {"user": {"visits": 3}})
        nb.reward(r.event_id, 1.0)

The server (`nextbest serve`, `train`, `export`, `evaluate`, `demo`) needs `pip install 'nextbest[server]'`;
its code is under `nextbest.server` and `nextbest.policies`, the generated protobuf code under `nextbest.v1`,
the public test kit in `nextbest.testing`.
"""

from nextbest.client import Client, ExportedModel, action, features, namespaces, open_channel, slot

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

__all__ = ["Client", "ExportedModel", "__version__", "action", "features", "namespaces", "open_channel", "slot"]
