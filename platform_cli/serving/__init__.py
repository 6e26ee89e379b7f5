"""Model serving. Nothing is imported here: server and transformer pull in TensorFlow or KServe,
which only their processes need.

- server.py       the KServe model server process for one model version
- transformer.py  the shared feature transform as KServe pre-processing (cluster transformer)
- local.py        starting, finding and stopping local server processes
- traffic.py      gray release as data: splits, promote/rollout/approve/rollback (pure)
- state.py        a model's split on disk, changed under a lock
- router.py       the per-model traffic-split router process (upstream.py: its HTTP client)
- metrics.py      per-version request metrics kept by the router
- release.py      gray release on a stack: local processes, or KServe objects via cluster.py
"""
