"""The pinball world: a seeded multichannel customer simulator that knows the truth, to test deciders against.

Customers (segment, lifecycle stage, device, time zone, consents) have hidden
tastes for channels and offers; at each occasion a decider picks an offer on a
channel (email, push, sms, web banner, in-app, sales call) or `nothing`. The
customer clicks soon, buys later or never, tires of repeated contacts and may
unsubscribe; tastes drift, an offer launches mid-run and a channel's consent
is withdrawn from everyone. Because the world knows the expected reward of
every action at every moment, it reports the oracle and each decider's regret.

- `config.WorldConfig`: every parameter, with the response model in its docstring;
- `population`: the customers and their occasions (a function of the seed);
- `world.World`: one decider's copy of the world: `observe` and `respond`;
- `features`: what the service sees (context, one line per action), with
  the history the caller computed or without it (the service keeps it);
- `journey`: the scripted journey, a `rules:` policy, and its weekly cap as
  a contact rule;
- `arms`: a service loop (customers by subject id or not), the oracle;
- `simulate`: runs arms side by side in world time; `compare`: through a
  service or in-process; `report`: table, JSON and PNG.

`nextbest demo` runs it through a service; `python -m benchmarks.learning`
measures learning quality on it.
"""
