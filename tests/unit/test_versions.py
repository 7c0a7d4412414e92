import pytest

from image_gate.core.osnames import os_key
from image_gate.core.versions import InvalidConstraint, VersionConstraint


@pytest.mark.parametrize(
    ("constraint", "version", "allowed"),
    [
        (">=11", "12", True),
        (">=11", "11", True),
        (">=11", "10.13", False),
        ("<24", "22.04", True),
        ("<24", "24.04", False),
        ("==22.04", "22.04", True),
        ("22.04", "22.04", True),
        ("22.04", "22.4", True),
        ("==22.04", "24.04", False),
        (">3.9", "3.20", True),
        ("<3.20", "3.9", True),
        (">=7.9", "7.9.2009", True),
        ("<7.9.2009", "7.9", True),
        ("12.*", "12", True),
        ("12.*", "12.7", True),
        ("12.*", "13.0", False),
        ("!=12.*", "13.0", True),
        (">=3.18,<4", "3.20.3", True),
        (">=3.18,<4", "4.0", False),
        ("!=7", "7.0", False),
        (">=11", "bookworm/sid", False),
        ("==rolling", "Rolling", True),
        (">=22", "22.04.3 LTS", True),
        (">=1", "v1.2", True),
    ],
)
def test_constraints_compare_numerically(constraint: str, version: str, allowed: bool) -> None:
    assert VersionConstraint.parse(constraint).allows(version) is allowed


@pytest.mark.parametrize("text", ["", "  ", ">=", ">= 11 12", ">=abc", ">=12.*", "~>1"])
def test_bad_constraints_are_refused(text: str) -> None:
    with pytest.raises(InvalidConstraint):
        VersionConstraint.parse(text)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Debian GNU/Linux", "debian"),
        ("debian", "debian"),
        ("Ubuntu", "ubuntu"),
        ("Alpine Linux", "alpine"),
        ("Red Hat Enterprise Linux", "rhel"),
        ("RHEL", "rhel"),
        ("CentOS Linux", "centos"),
        ("CentOS", "centos"),
        ("CentOS Stream", "centos-stream"),
        ("Huawei Cloud EulerOS", "hce"),
        ("Alibaba Cloud Linux", "alinux"),
        ("Rocky Linux", "rocky"),
        ("  Arch   Linux ", "arch"),
        ("Some New OS", "some-new-os"),
    ],
)
def test_os_names_reduce_to_one_key(name: str, key: str) -> None:
    assert os_key(name) == key
