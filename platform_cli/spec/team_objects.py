"""Names of the objects a team stack puts in its namespace for the team's jobs.

One home for the contract between the Pulumi program (infra/components/team.py creates them) and
the cluster renderer (platform_cli/render/cluster.py refers to them by name): change a name here
and both sides follow.
"""

JOBS_SERVICE_ACCOUNT = "plinth-jobs"            # every job pod; Spark drivers create executors with it
WORKFLOW_SERVICE_ACCOUNT = "plinth-workflow"  # Argo workflow pods: create the team's workloads, report results
TEAM_CONFIG_MAP = "plinth-team"                 # storage root, tracking URI, queue, image
STORAGE_SECRET = "plinth-storage-credentials"   # S3 keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
REGISTRY_SECRET = "plinth-image-registry"       # pull secret for a private image registry
HDFS_CONFIG_MAP = "plinth-hdfs-config"          # core-site.xml and hdfs-site.xml for HDFS clients
HADOOP_CONF_MAP = "plinth-hadoop-conf"          # YARN client settings on YARN stacks
ONLINE_STORE_SERVICE = "plinth-online-store"    # the team's Redis online feature store (Deployment and Service)
ONLINE_STORE_PORT = 6379
ONLINE_STORE_SECRET = "plinth-online-store"     # its password, key ONLINE_STORE_SECRET_KEY
ONLINE_STORE_SECRET_KEY = "password"
PARAMETER_STORE_SECRET = "plinth-parameter-store"  # the parameter store's (Redis) password, key PARAMETER_STORE_SECRET_KEY,
PARAMETER_STORE_SECRET_KEY = "password"            # which version servers reading embedding rows get as PLINTH_REDIS_PASSWORD
