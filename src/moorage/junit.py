"""A rollout's steps as a JUnit XML report (``moorage deploy --junit FILE``), for CI servers.

One ``<testsuite>`` per command, one ``<testcase>`` per step (``moorage.deploy.steps``): the
preflight, the shipping, each batch, each instance's health gate, the revert, the removal. A failed
step is a case with a ``<failure>`` whose ``message`` is the reason on one line and whose text has
the rest (an instance's last log lines, every problem of a spec); a batch not started after a failed
one is ``<skipped>``. The layout is the one Jenkins' ``junit`` step, GitLab and most CI servers read
(the Ant/Surefire schema): ``classname`` is ``moorage.deploy.SERVICE.KIND``, so a CI server groups
the cases by service and kind. Written with the standard library only, atomically (a temporary file
renamed into place), with characters XML 1.0 cannot hold (a terminal's escape codes in a log line)
taken out.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from moorage.deploy.steps import StepResult

# What XML 1.0 allows: tab, newline, carriage return, and the printable ranges.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def junit_tree(
    suite: str, results: Sequence[StepResult], *, properties: Mapping[str, str] | None = None, timestamp: datetime | None = None
) -> ET.ElementTree[ET.Element]:
    """The report of ``results`` as one test suite named ``suite`` in a ``<testsuites>`` root."""
    failures = sum(1 for result in results if result.status == "failed")
    skipped = sum(1 for result in results if result.status == "skipped")
    total = _seconds(sum(result.seconds for result in results))
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0", "skipped": str(skipped), "time": total}
    root = ET.Element("testsuites", {"name": _text(suite), **counts})
    when = (timestamp or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    element = ET.SubElement(
        root, "testsuite", {"name": _text(suite), **counts, "timestamp": when.isoformat(), "hostname": socket.gethostname()}
    )
    if properties:
        listed = ET.SubElement(element, "properties")
        for name, value in properties.items():
            ET.SubElement(listed, "property", {"name": _text(name), "value": _text(value)})
    for result in results:
        classname = ".".join(["moorage", "deploy", *([result.service] if result.service else []), result.kind])
        case = ET.SubElement(
            element, "testcase", {"classname": _text(classname), "name": _text(result.name), "time": _seconds(result.seconds)}
        )
        if result.status == "failed":
            failure = ET.SubElement(case, "failure", {"message": _text(result.message), "type": _text(result.error_type or result.kind)})
            failure.text = _text(result.detail or result.message)
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", {"message": _text(result.message)})
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(
    path: Path, suite: str, results: Sequence[StepResult], *, properties: Mapping[str, str] | None = None, timestamp: datetime | None = None
) -> None:
    """Write the report to ``path`` (its directory made if missing), replacing it whole or not at all."""
    tree = junit_tree(suite, results, properties=properties, timestamp=timestamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            tree.write(file, encoding="utf-8", xml_declaration=True)
            file.write(b"\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
