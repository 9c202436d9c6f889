"""`judge-core serve`: the judge as a batching HTTP scoring service.

The data's way: HTTP request (app.py) -> validated inputs (requests.py; rewards.py expands groups into
pairs) -> prompts and token ids on a request thread (prepare.py) -> one Scheduler (scheduler.py)
whose single worker thread owns the model and fills token-budget batches from every open request
-> PairScore per pair -> JSON. Counters for /metrics: metrics.py; limits: limits.py.
Nothing is imported here, so that `judge-core --help` stays instant; fastapi is imported only by app.py.
"""
