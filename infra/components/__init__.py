"""ComponentResources the program composes: one module per part of the platform.

Platform stack (once per cluster): gpu_pool (node pools), gpu (NVIDIA driver / device plugin),
scheduler (Volcano or Kueue, PriorityClasses), storage (HDFS or S3), serving (cert-manager,
KServe), hadoop (YARN client settings). Team stack: team (namespace, quota, RBAC, network
policy, queue, storage, registry).
"""
