"""Hadoop client settings (core-site.xml, hdfs-site.xml, yarn-site.xml) as Kubernetes ConfigMaps.

Values are data: every name and value is XML-escaped, so a value with `<`, `&` or quotes stays
one property value and cannot add properties.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import pulumi


def render_site_xml(properties: dict[str, str]) -> str:
    """A Hadoop *-site.xml with `properties`."""
    rows = "".join(
        f"  <property>\n    <name>{escape(str(name))}</name>\n    <value>{escape(str(value))}</value>\n  </property>\n"
        for name, value in properties.items()
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\n{rows}</configuration>\n'


def site_xml(properties: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """render_site_xml for values that may be Outputs (addresses of deployed services)."""
    return pulumi.Output.from_input(properties).apply(render_site_xml)


def yarn_client_files(default_fs: pulumi.Input[str], resource_manager: pulumi.Input[str]) -> dict[str, pulumi.Output[str]]:
    """HADOOP_CONF_DIR for spark-submit --master yarn: where HDFS and the ResourceManager are."""
    return {
        "core-site.xml": site_xml({"fs.defaultFS": default_fs}),
        "yarn-site.xml": site_xml({"yarn.resourcemanager.address": resource_manager}),
    }
