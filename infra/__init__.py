"""The Pulumi program (`__main__.py`) and its components; see Pulumi.yaml at the project root."""
