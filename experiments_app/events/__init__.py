"""Events out of the product (SPEC §4): event endpoints, the events a run or an experiment
emits, and their signed, retried, logged delivery.

- emit.py       build an event's body and record one delivery per interested endpoint, woken on commit
- deliver.py    send one delivery (signed like a test delivery), retry it by runs/policy.py, give up,
                and disable an endpoint that keeps failing
- endpoints.py  what team admins do: create, change, delete, rotate the secret, redeliver by hand

Import the module you need (`from experiments_app.events import emit`): this package's
`__init__` imports nothing, so the actions and the run package can emit without pulling in
the delivery side (which uses the run package's retry policy).
"""
