"""Model serving. Nothing is imported here: server and transformer pull in TensorFlow or KServe,
which only their processes need.

- server.py       the model server process for one model version (KServe's v1 protocol)
- batching.py     adaptive micro-batching of concurrent requests into one model call
- inputs.py       a request's rows and model inputs, and the 400s
- transformer.py  the shared feature transform as KServe pre-processing (cluster transformer)
- local.py        starting, finding and stopping local server processes
- traffic.py      gray release as data: splits, promote/rollout/approve/rollback (pure)
- state.py        a model's split on disk, changed under a lock
- router.py       the per-model traffic split: HAProxy weighted by the split, and its control process
- metrics.py      per-version request metrics, kept by the version servers
- release.py      gray release on a stack: local processes, or KServe objects via cluster.py
"""
