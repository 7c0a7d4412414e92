"""
Operating-system names as policies write them and as HSS reports them.

HSS returns names the way the image's ``/etc/os-release`` spells them
("Debian GNU/Linux", "CentOS Linux", "Alpine Linux"); people write policies with
short names ("debian", "CentOS", "alpine"). Both sides are reduced to one key
here, in one table, so that the comparison is the same everywhere. Messages
always show the name HSS returned, never the key.
"""

from __future__ import annotations

import re

__all__ = ["os_key"]

# Reduced spelling -> key. Keys follow os-release ``ID`` values where one exists.
_ALIASES: dict[str, str] = {
    "debian": "debian",
    "debian gnu/linux": "debian",
    "ubuntu": "ubuntu",
    "alpine": "alpine",
    "alpine linux": "alpine",
    "centos": "centos",
    "centos linux": "centos",
    "centos stream": "centos-stream",
    "rhel": "rhel",
    "red hat enterprise linux": "rhel",
    "red hat enterprise linux server": "rhel",
    "redhat": "rhel",
    "huawei cloud euleros": "hce",
    "hce": "hce",
    "hce os": "hce",
    "euleros": "euleros",
    "openeuler": "openeuler",
    "alibaba cloud linux": "alinux",
    "aliyun linux": "alinux",
    "alinux": "alinux",
    "anolis os": "anolis",
    "anolis": "anolis",
    "amazon linux": "amzn",
    "amzn": "amzn",
    "oracle linux": "ol",
    "oracle linux server": "ol",
    "rocky linux": "rocky",
    "rocky": "rocky",
    "almalinux": "almalinux",
    "alma linux": "almalinux",
    "fedora": "fedora",
    "fedora linux": "fedora",
    "opensuse leap": "opensuse-leap",
    "suse linux enterprise server": "sles",
    "sles": "sles",
    "kylin linux advanced server": "kylin",
    "kylin": "kylin",
    "distroless": "distroless",
    "busybox": "busybox",
}

_SPACES = re.compile(r"\s+")
_TRAILING_LINUX = re.compile(r"\s+(?:gnu/)?linux$")


def os_key(name: str) -> str:
    """The comparison key of an OS name: ``"Debian GNU/Linux"`` -> ``"debian"``.

    Names not in the table fall back to lowercase with a trailing "Linux"
    dropped and spaces as dashes ("Arch Linux" -> "arch"), so an unknown
    distribution still compares equal to its plain spelling.
    """
    reduced = _SPACES.sub(" ", name.strip().lower())
    if reduced in _ALIASES:
        return _ALIASES[reduced]
    stripped = _TRAILING_LINUX.sub("", reduced)
    return _ALIASES.get(stripped, stripped.replace(" ", "-"))
