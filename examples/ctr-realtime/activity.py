"""The CTR feed's real-time activity aggregates: Spark Structured Streaming from the feed's
event log into the online store (the stream itself is platform_cli.features.stream; the
aggregates are declared in activity.job.yaml)."""

from platform_cli.features.stream import main

if __name__ == "__main__":
    raise SystemExit(main())
