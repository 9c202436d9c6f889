"""`judge-core serve`: the judge as a batching HTTP scoring service.

The data's way: HTTP request (app.py; uvicorn set up by server.py: header deadline, second-signal
exit) -> body parsed and validated on a worker thread (requests.py; rewards.py expands groups into
pairs) -> admission (scheduler.admit: queue room and the client's deadline, before any work) ->
prompts and token ids on a worker thread (prepare.py) -> one Scheduler (scheduler.py) whose single
worker thread owns the model and fills token-budget batches from every open request -> PairScore per
pair -> JSON. Counters for /metrics: metrics.py; limits: limits.py; /openapi.json shapes: schemas.py.
Nothing is imported here, so that `judge-core --help` stays instant; fastapi is imported only by app.py.
"""
