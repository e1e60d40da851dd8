"""pytest fixture for the network-namespace lab (scripts/lab.sh, prefix "ipst").

Use it from tests/conftest.py with either of:

    pytest_plugins = ["conftest_lab"]
    from conftest_lab import lab_fixture  # noqa: F401   (the fixture is named "lab")

and in tests:

    @pytest.mark.netns
    def test_something(lab: Lab) -> None:
        lab.exec("client", ["ping", "-c1", lab.victim4])
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from lab import LAB_SH, Lab

TEST_PREFIX = os.environ.get("IPS_TEST_LAB_PREFIX", "ipst")  # parallel runs need their own


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "netns lab needs root (network namespaces, veth, bridge)"
    for tool in ("ip", "ping", "curl"):
        if shutil.which(tool) is None:
            return f"netns lab needs '{tool}' on PATH"
    if not os.access(LAB_SH, os.X_OK):
        return f"{LAB_SH} is missing or not executable"
    return None


@pytest.fixture(scope="module", name="lab")
def lab_fixture() -> Iterator[Lab]:
    """A lab with prefix "ipst", up for the module and always torn down afterwards."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(TEST_PREFIX)
    try:
        lab.down()  # leftovers of an interrupted run
        lab.up()
        yield lab
    finally:
        lab.down()
