"""Model serving: the KServe model server process (server) and local server management (local).

Neither is imported here: server pulls in TensorFlow and KServe, which only its process needs.
"""
